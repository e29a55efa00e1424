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
from muxio.handlers.http import App, Request, Response
from muxio.loop import Loop

DESCRIPTION = ("HTTP/1.1: 'Hello, World!' on GET /, or static files with --root (TCP or KCP, "
               "HTTPS with --tls-cert)")
DEFAULT_PORT = 8080


def add_arguments(parser: argparse.ArgumentParser) -> None:
    handler.add_arguments(parser)
    add_transport_argument(parser)
    add_server_arguments(parser, alpn=handler.ALPN)


class DrainingApp:
    """The app, and once `start_draining()` is called, every response it gives says
    `Connection: close`: a graceful stop ends each kept-alive connection right after a
    response, when the client knows not to send another request on it (closing an idle
    connection instead races a request already on its way)."""

    __slots__ = ("app", "draining")

    def __init__(self, app: App) -> None:
        self.app = app
        self.draining = False

    def __call__(self, request: Request) -> Response:
        response = self.app(request)
        if self.draining and not response.close:
            return Response(response.status, response.headers, response.body,
                            content_length=response.content_length, close=True)
        return response

    def start_draining(self) -> None:
        self.draining = True


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    config = handler_config(handler, args)
    if config.minimal:  # the benchmark baseline: no app to drain
        factory = handler.protocol_factory(loop, config)
        return TcpService(serve_stream(log_connections(factory, "http", args), loop, args),
                          transport_label(args))
    app = DrainingApp(config.app())
    factory = handler.protocol_factory(loop, config, app=app)
    return TcpService(serve_stream(log_connections(factory, "http", args), loop, args),
                      transport_label(args), on_drain=app.start_draining)
