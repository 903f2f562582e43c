"""Command-line conventions shared by every command of the project.

Bad arguments give one line on stderr (``<prog>: error: <reason>``) and exit code 2; errors
raised by the library with a clear message (``UsageError``) are reported the same way.
"""
from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """A user mistake found after parsing (unwritable folder, missing root...): exit 2."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit 2 (argparse prints the usage too)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def run_main(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv`` and call ``args.func(args)``; map UsageError to a one-line exit 2."""
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{parser.prog}: interrupted\n")
        return 130


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text}")
    return value
