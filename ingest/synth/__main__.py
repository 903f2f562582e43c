"""``python -m ingest.synth``: the ``synth`` command on its own."""
from shards.cmdline import Parser, run_main

from .command import register


def main(argv=None) -> int:
    parser = Parser(prog="ingest")
    register(parser.add_subparsers(dest="command", parser_class=Parser))
    return run_main(parser, ["synth", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())
