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

SUBCOMMAND_MODULES = {
    "backends": "muxio.cli.backends",
    "config": "muxio.cli.backends",
    "serve": "muxio.cli.serve",
    "chat": "muxio.cli.chat",
    "resolve": "muxio.cli.resolve",
    "bench": "muxio.cli.bench",
    "connect": "muxio.cli.connect",
}
"""Each command and the module that registers it. A command line that names one imports
only its module: importing all of them (the DNS answer compiler, rich, the bench runners)
costs more than half a second before a server can start or Ctrl-C can be quiet."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose usage errors are the house's one line, `muxio: error: ...` (exit 2),
    pointing at --help instead of printing the whole usage block. Subparsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"muxio: error: {message} (see '{self.prog} --help')\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `muxio` parser; given the command line, with only the command it names (every
    command when it names none, e.g. `muxio --help`)."""
    parser = OneLineErrorParser(
        prog="muxio", description="Run protocol handlers on any poller and transport.")
    parser.add_argument("--version", action="version", version=f"muxio {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    named = _named_command(argv)
    modules = ([SUBCOMMAND_MODULES[named]] if named is not None
               else list(dict.fromkeys(SUBCOMMAND_MODULES.values())))
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that command is not part of this build
            raise
        module.register(subparsers)
    return parser


def _named_command(argv: Sequence[str] | None) -> str | None:
    """The command a command line names: its first word that is not a global option (those
    take no value), if it is a known command."""
    for word in argv or ():
        if not word.startswith("-"):
            return word if word in SUBCOMMAND_MODULES else None
    return None


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
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
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
