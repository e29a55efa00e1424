"""Entry point of the `muxio` command: global options, then one subcommand module each.

A subcommand module provides `register(subparsers)`, which adds its parser and sets
`func` (taking the parsed namespace and returning an exit code) as a default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from muxio import __version__
from muxio.errors import MuxioError

EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a shell reports for a program killed by a closed pipe."""

SUBCOMMAND_MODULES = (
    "muxio.cli.backends",
    "muxio.cli.serve",
    "muxio.cli.chat",
    "muxio.cli.resolve",
    "muxio.cli.bench",
    "muxio.cli.connect",
)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose usage errors are the house's one line, `muxio: error: ...` (exit 2),
    pointing at --help instead of printing the whole usage block. Subparsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"muxio: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="muxio", description="Run protocol handlers on any poller and transport.")
    parser.add_argument("--version", action="version", version=f"muxio {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that command is not part of this build
            raise
        module.register(subparsers)
    return parser


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--backend` flag (second in precedence, after an API argument)."""
    parser.add_argument(
        "--backend", default=None, metavar="NAME",
        help="poller backend (see 'muxio backends'); overrides MUXIO_BACKEND and config files")


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else (
        logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a reader that left fails here, not in the flush at exit
        return code
    except KeyboardInterrupt:  # Ctrl-C while starting: building the parser imports for a while
        return 130
    except BrokenPipeError:
        # `muxio backends --json | head`: the reader left. No traceback; and stdout goes to
        # /dev/null so that Python's flush at exit does not fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except MuxioError as exc:
        print(f"muxio: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
