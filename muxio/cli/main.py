"""Entry point of the `muxio` command: global options, then one subcommand module each.

A subcommand module provides `register(subparsers)`, which adds its parser and sets
`func` (taking the parsed namespace and returning an exit code) as a default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from muxio import __version__
from muxio.errors import MuxioError

SUBCOMMAND_MODULES = (
    "muxio.cli.backends",
    "muxio.cli.serve",
    "muxio.cli.chat",
    "muxio.cli.resolve",
    "muxio.cli.bench",
    "muxio.cli.connect",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
