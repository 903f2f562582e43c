"""The ``ingest`` command: one sub-command per module in COMMAND_MODULES, and the benchmarks.

Each module defines ``register(subparsers)`` which adds its sub-parser and sets ``func``; the
benchmarks (``bench``, ``bench-synth``, ``bench-register``, ``bench-realsize``) keep their own parsers (``cmdline.add_delegate``).
"""
from __future__ import annotations

import importlib

from shards.cmdline import Parser, add_delegate, run_main

COMMAND_MODULES = (
    "ingest.synth.command",      # ingest synth
    "ingest.build_command",      # ingest build-shards, ingest build-downstream
    "ingest.qc",                 # ingest qc
)


def build_parser() -> Parser:
    parser = Parser(prog="ingest", description="Exams to registered 16-bit patch-pair shards.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    add_delegate(sub, "bench", "ingest.bench",
                 "build-shards end to end: exam pairs per second per worker count (benchmark)")
    add_delegate(sub, "bench-synth", "ingest.synth.bench",
                 "synthetic generator: images per second at 1 and 2 workers (benchmark)")
    add_delegate(sub, "bench-register", "ingest.register_bench",
                 "registration: seconds per pair and error against known truth (benchmark)")
    add_delegate(sub, "bench-realsize", "ingest.bench_realsize",
                 "one exam pair at real image sizes per transfer syntax: decode, normalise, "
                 "register (benchmark)")
    return parser


def main(argv=None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
