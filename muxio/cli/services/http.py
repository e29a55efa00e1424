"""`muxio serve http`: the HTTP/1.1 handler, serving the hello app or static files.

    muxio serve http --port 8080                      # GET / -> Hello, World!
    muxio serve http --port 8080 --root ./public      # static files
    muxio serve http --access-log ...                 # one log line per response
    muxio serve http --tls-cert cert.pem --tls-key key.pem          # HTTPS (ALPN http/1.1)
    muxio serve http --transport kcp --tls-cert ... --tls-key ...   # HTTPS over KCP
    muxio serve http --protocol minimal     # the benchmark baseline, not the handler

The handler and its options come from `muxio.handlers.http` (its hosting shape), which
`python -m adapters --service http` uses as well to host it on asyncio, uvloop or Twisted.
"""

from __future__ import annotations

import argparse

from muxio.cli.services import add_transport_argument, handler_config, serve_stream
from muxio.cli.services.connlog import log_connections
from muxio.cli.services.tcp_service import TcpService, transport_label
from muxio.cli.tls_options import add_server_arguments
from muxio.handlers import http as handler
from muxio.loop import Loop

DESCRIPTION = ("HTTP/1.1: 'Hello, World!' on GET /, or static files with --root (TCP or KCP, "
               "HTTPS with --tls-cert)")
DEFAULT_PORT = 8080


def add_arguments(parser: argparse.ArgumentParser) -> None:
    handler.add_arguments(parser)
    add_transport_argument(parser)
    add_server_arguments(parser, alpn=handler.ALPN)


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    factory = handler.protocol_factory(loop, handler_config(handler, args))
    return TcpService(serve_stream(log_connections(factory, "http", args), loop, args),
                      transport_label(args))
