"""The ``train`` command: one sub-command per module in COMMAND_MODULES.

Each module defines ``register(subparsers)`` which adds its sub-parser and sets ``func``.
"""
from __future__ import annotations

import importlib

from shards.cmdline import Parser, run_main

COMMAND_MODULES = (
    "train.method_commands",     # train siamese, train simclr, train byol
    "train.bench_command",       # train bench
    "train.eval_commands",       # train evaluate, train linear-eval, train report
    "train.compare_command",     # train compare
)


def build_parser() -> Parser:
    parser = Parser(prog="train", description=(
        "Self-supervised training on patch-pair shards: the Siamese soft-label method, the "
        "SimCLR and BYOL baselines, their benchmark, evaluation and comparison."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
