"""`muxio serve http`: the HTTP/1.1 handler, serving the hello app or static files.

    muxio serve http --port 8080                      # GET / -> Hello, World!
    muxio serve http --port 8080 --root ./public      # static files
    muxio serve http --access-log ...                 # one log line per response

The handler and its options come from `muxio.handlers.http` (its hosting shape), which
`python -m adapters --service http` uses as well to host it on asyncio, uvloop or Twisted.
"""

from __future__ import annotations

import argparse

from muxio.cli.services import add_transport_argument, handler_config, serve_stream
from muxio.cli.services.tcp_service import TcpService
from muxio.handlers import http as handler
from muxio.loop import Loop

DESCRIPTION = handler.DESCRIPTION
DEFAULT_PORT = 8080


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_transport_argument(parser)
    handler.add_arguments(parser)


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    factory = handler.protocol_factory(loop, handler_config(handler, args))
    return TcpService(serve_stream(factory, loop, args), args.transport)
