"""`muxio serve echo`: the echo handler on any stream transport.

    muxio serve echo --port 7007
    muxio serve echo --transport kcp --backend epoll-et
"""

from __future__ import annotations

import argparse

from muxio.cli.services import add_transport_argument, handler_config, serve_stream
from muxio.cli.services.connlog import log_connections
from muxio.cli.services.tcp_service import TcpService
from muxio.handlers import echo as handler
from muxio.loop import Loop

DESCRIPTION = handler.DESCRIPTION
DEFAULT_PORT = 7007


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_transport_argument(parser)
    handler.add_arguments(parser)


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    factory = handler.protocol_factory(loop, handler_config(handler, args))
    return TcpService(serve_stream(log_connections(factory, "echo", args), loop, args),
                      args.transport)
