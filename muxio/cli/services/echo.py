"""`muxio serve echo`: the echo handler on TCP."""

from __future__ import annotations

import argparse

from muxio.cli.services.tcp_service import TcpService
from muxio.handlers.echo import EchoProtocol
from muxio.loop import Loop
from muxio.protocols import ProtocolFactory, Scheduler
from muxio.transports import tcp
from muxio.transports.registry import STREAM_TRANSPORTS, stream_transport

DESCRIPTION = "echo every byte back (TCP or KCP)"
DEFAULT_PORT = 7007


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=sorted(STREAM_TRANSPORTS), default="tcp",
                        help="stream transport (default: tcp; kcp runs over UDP)")


def protocol_factory(scheduler: Scheduler, args: argparse.Namespace) -> ProtocolFactory:
    """The handler factory, for any host (muxio's loop, or asyncio/uvloop/Twisted)."""
    return EchoProtocol


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    factory = protocol_factory(loop, args)
    if args.transport == "tcp":
        server = tcp.serve(factory, args.host, args.port, loop=loop, backlog=args.backlog,
                           reuse_port=args.reuse_port)
    else:
        server = stream_transport(args.transport).serve(factory, args.host, args.port,
                                                        loop=loop)
    return TcpService(server, args.transport)
