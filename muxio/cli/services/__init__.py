"""Services that `muxio serve NAME` can run: a handler wired to a transport server.

One module per service, listed in `SERVICES`. A service module provides:

    DESCRIPTION: str
    DEFAULT_PORT: int
    def add_arguments(parser: argparse.ArgumentParser) -> None    # its own options
    def start(loop: Loop, args: argparse.Namespace) -> Service      # start serving

The common options (--host, --port, --backend) are added by `muxio serve` itself.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from muxio.loop import Loop

SERVICES: dict[str, str] = {
    "echo": "muxio.cli.services.echo",
    "http": "muxio.cli.services.http",
    "chat": "muxio.cli.services.chat",
    "dns": "muxio.cli.services.dns",
}


class Service(Protocol):
    """A running service: where it listens, and how to stop it cleanly."""

    def describe(self) -> str:
        """e.g. 'tcp 127.0.0.1:8080, tcp [::1]:8080'."""
        ...

    def close(self) -> None:
        """Stop listening and close every connection (called in the loop thread)."""
        ...


class ServiceModule(Protocol):
    DESCRIPTION: str
    DEFAULT_PORT: int

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def start(self, loop: Loop, args: argparse.Namespace) -> Service: ...
