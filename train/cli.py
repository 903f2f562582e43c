"""The ``train`` command group: Siamese soft-label training, SimCLR, BYOL and linear evaluation.

The models land with the training package; until then the group lists what it will hold and
exits non-zero for any sub-command, so scripts cannot mistake it for a finished run.
"""
from __future__ import annotations

from shards.cmdline import Parser, run_main


def build_parser() -> Parser:
    return Parser(prog="train", description=(
        "Training on patch-pair shards (Siamese soft-label, SimCLR, BYOL, linear evaluation). "
        "No training method is available in this version: the data path (ingest, shards, "
        "loaders) is."))


def main(argv=None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
