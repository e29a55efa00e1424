"""`muxio serve echo`: the echo handler on TCP or KCP, with or without TLS.

    muxio serve echo --port 7007
    muxio serve echo --transport kcp --tls-cert cert.pem --tls-key key.pem   # TLS over KCP
"""

from __future__ import annotations

import argparse

from muxio.cli.services.tcp_service import TcpService, serve_stream, transport_label
from muxio.cli.tls_options import add_server_arguments
from muxio.handlers.echo import EchoProtocol
from muxio.loop import Loop
from muxio.protocols import ProtocolFactory, Scheduler
from muxio.transports.registry import STREAM_TRANSPORTS

DESCRIPTION = "echo every byte back (TCP or KCP, optionally over TLS)"
DEFAULT_PORT = 7007


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=sorted(STREAM_TRANSPORTS), default="tcp",
                        help="stream transport (default: tcp; kcp runs over UDP)")
    add_server_arguments(parser, alpn=("echo",))


def protocol_factory(scheduler: Scheduler, args: argparse.Namespace) -> ProtocolFactory:
    """The handler factory, for any host (muxio's loop, or asyncio/uvloop/Twisted)."""
    return EchoProtocol


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    return TcpService(serve_stream(protocol_factory(loop, args), args, loop),
                      transport_label(args))
