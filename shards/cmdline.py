"""Command-line conventions shared by every command of the project (``ingest``, ``shards``,
``loaders``, ``train`` and the benchmarks).

Bad arguments give one line on stderr (``<prog>: error: <reason>``) and exit code 2. Library code
raises ordinary exceptions with a clear message (``ValueError``, ``FileNotFoundError``...);
``run_main`` reports those, and ``UsageError`` raised by a command's own checks, the same way.
The options every command spells alike (workers, progress bars, the shard set, the S3 endpoint)
are added by the ``add_*`` helpers below, so their names, types and help live here once.
"""
from __future__ import annotations

import argparse
import importlib
import sys


class UsageError(Exception):
    """A user mistake found by a command after parsing (flags that do not go together): exit 2."""


# What a command reports as one line and exit 2 rather than a traceback: the user's input is
# wrong (a missing or unreadable path, a value the library rejects), not the program.
USER_ERRORS = (UsageError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, FileExistsError)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit 2 (argparse prints the usage too)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def run_main(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv`` and call ``args.func(args)``; a user error is one line and exit 2."""
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "delegate", None):
        return int(importlib.import_module(args.delegate).main(extra) or 0)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
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


# --- options spelled alike by every command ----------------------------------------------------

def add_workers(parser, default, help: str) -> None:
    """``--workers N``: how many processes or threads do the work; a positive integer."""
    parser.add_argument("--workers", type=positive_int, default=default, help=help)


def add_quiet(parser) -> None:
    """``--quiet`` (also spelled ``--no-progress``): no progress bars; sets ``args.quiet``."""
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bars")


def add_shard_set(parser, flag: str | None = None) -> None:
    """The shard set a command reads: a root folder or URL holding ``manifest.json``.

    Positional (``shards verify ROOT_OR_URL``) by default, or an option (``--shards``) where the
    command has other inputs.
    """
    names = (flag,) if flag else ("root",)
    parser.add_argument(*names, metavar="ROOT_OR_URL",
                        help="shard set root folder or URL (holding manifest.json)")


def add_endpoint_url(parser) -> None:
    """``--endpoint-url``: the S3-compatible endpoint for ``s3://`` shard sets."""
    parser.add_argument("--endpoint-url", default=None,
                        help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL_S3 / "
                             "$AWS_ENDPOINT_URL)")


def add_delegate(subparsers, name: str, module: str, help: str) -> None:
    """A sub-command run by another module's ``main(argv)``, with the arguments that follow it.

    The benchmarks keep their own parsers (and ``python -m <module>``) and are started as
    ``<package> bench``; the module is imported only when its sub-command runs, so the command's
    help stays fast.
    """
    p = subparsers.add_parser(name, help=help, add_help=False)
    p.set_defaults(delegate=module)
