"""`muxio serve echo`: the echo handler on any stream transport, with or without TLS.

    muxio serve echo --port 7007
    muxio serve echo --transport kcp --backend epoll-et
    muxio serve echo --transport kcp --tls-cert cert.pem --tls-key key.pem   # TLS over KCP
"""

from __future__ import annotations

import argparse

from muxio.cli.services import add_transport_argument, handler_config, serve_stream
from muxio.cli.services.connlog import log_connections
from muxio.cli.services.tcp_service import TcpService, transport_label
from muxio.cli.tls_options import add_server_arguments
from muxio.handlers import echo as handler
from muxio.loop import Loop

DESCRIPTION = "echo every byte back (TCP or KCP, optionally over TLS)"
DEFAULT_PORT = 7007


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_transport_argument(parser)
    handler.add_arguments(parser)
    add_server_arguments(parser, alpn=handler.ALPN)


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    factory = handler.protocol_factory(loop, handler_config(handler, args))
    return TcpService(serve_stream(log_connections(factory, "echo", args), loop, args),
                      transport_label(args))
