"""Options shared by the workloads of `muxio bench`: backend and peer lists, count lists
(`--workers 1,2,4`), each checked into one `muxio: error:` line."""

from __future__ import annotations

import argparse

from muxio.errors import ConfigError, MuxioError
from muxio.pollers.registry import default_registry


def backend_names(args: argparse.Namespace) -> list[str]:
    """`--backends`, each one known and available here."""
    backends = [name for name in args.backends.split(",") if name]
    registry = default_registry()
    for name in backends:
        try:
            registry.choose(name)
        except MuxioError as exc:  # unknown or unavailable here: one line, exit 2
            raise ConfigError(f"--backends: {exc}") from None
    return backends


def peer_names(args: argparse.Namespace, known_peers: tuple[str, ...]) -> list[str]:
    """`--peers` (default: every known one), each one of `known_peers`."""
    given = args.peers if args.peers is not None else ",".join(known_peers)
    peers = [name for name in given.split(",") if name]
    unknown = [peer for peer in peers if peer not in known_peers]
    if unknown:
        context = " with --tls" if args.tls else (
            f" for {args.workload}" if args.workload in ("dns", "scale")
            or args.workload.startswith("aio-") else "")
        raise ConfigError(f"--peers {unknown} unknown{context}; choose from "
                          f"{', '.join(known_peers)}")
    return peers


def counts(text: str, flag: str, *, allow_zero: bool = False) -> list[int]:
    """'1,2,4' -> [1, 2, 4], each checked (one `muxio: error:` line otherwise)."""
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give numbers separated by commas") from None
    low = 0 if allow_zero else 1
    if not values or any(value < low for value in values):
        raise ConfigError(f"{flag} {text!r}: give numbers >= {low} separated by commas")
    return values
