"""`muxio serve echo`: the echo handler on TCP."""

from __future__ import annotations

import argparse

from muxio.cli.services.tcp_service import TcpService
from muxio.handlers.echo import EchoProtocol
from muxio.loop import Loop
from muxio.protocols import ProtocolFactory, Scheduler
from muxio.transports import tcp

DESCRIPTION = "echo every byte back (TCP)"
DEFAULT_PORT = 7007


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Echo has no options of its own."""


def protocol_factory(scheduler: Scheduler, args: argparse.Namespace) -> ProtocolFactory:
    """The handler factory, for any host (muxio's loop, or asyncio/uvloop/Twisted)."""
    return EchoProtocol


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    return TcpService(tcp.serve(protocol_factory(loop, args), args.host, args.port, loop=loop,
                                backlog=args.backlog, reuse_port=args.reuse_port))
