"""The ``ingest`` command: one sub-command per module in COMMAND_MODULES.

Each module defines ``register(subparsers)`` which adds its sub-parser and sets ``func``.
"""
from __future__ import annotations

import importlib

from shards.cmdline import Parser, run_main

COMMAND_MODULES = (
    "ingest.synth.command",      # ingest synth
    "ingest.build_command",      # ingest build-shards, ingest build-downstream
)


def build_parser() -> Parser:
    parser = Parser(prog="ingest", description="Exams to registered 16-bit patch-pair shards.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
