"""`muxio serve http`: the HTTP/1.1 handler on TCP, serving the hello app or static files.

    muxio serve http --port 8080                      # GET / -> Hello, World!
    muxio serve http --port 8080 --root ./public      # static files
    muxio serve http --access-log ...                 # one log line per response
    muxio serve http --tls-cert cert.pem --tls-key key.pem          # HTTPS (ALPN http/1.1)
    muxio serve http --transport kcp --tls-cert ... --tls-key ...   # HTTPS over KCP

`protocol_factory(scheduler, args)` also lets `python -m adapters --service http` host the
same handler on asyncio, uvloop or Twisted.
"""

from __future__ import annotations

import argparse
import logging
import os

from muxio.cli.services.tcp_service import TcpService, serve_stream, transport_label
from muxio.cli.tls_options import add_server_arguments
from muxio.errors import ConfigError
from muxio.handlers.http import (
    App,
    HttpConfig,
    Router,
    StaticFiles,
    hello_app,
    http_protocol_factory,
)
from muxio.loop import Loop
from muxio.protocols import ProtocolFactory, Scheduler
from muxio.transports.registry import STREAM_TRANSPORTS

DESCRIPTION = ("HTTP/1.1: 'Hello, World!' on GET /, or static files with --root (TCP or KCP, "
               "HTTPS with --tls-cert)")
DEFAULT_PORT = 8080
_DEFAULTS = HttpConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", metavar="DIR", default=None,
                        help="serve the files under DIR (GET/HEAD, ranges, conditional "
                             "requests) instead of the hello endpoint")
    parser.add_argument("--header-timeout", type=float, metavar="S",
                        default=_DEFAULTS.header_timeout,
                        help="seconds allowed for a request head to arrive "
                             f"(default: {_DEFAULTS.header_timeout:g}); slower gets 408")
    parser.add_argument("--keepalive-timeout", type=float, metavar="S",
                        default=_DEFAULTS.keepalive_timeout,
                        help="seconds an idle kept-alive connection stays open "
                             f"(default: {_DEFAULTS.keepalive_timeout:g})")
    parser.add_argument("--body-timeout", type=float, metavar="S",
                        default=_DEFAULTS.body_timeout,
                        help="longest pause inside a request body "
                             f"(default: {_DEFAULTS.body_timeout:g}); longer gets 408")
    parser.add_argument("--max-body", type=int, metavar="BYTES",
                        default=_DEFAULTS.max_body_size,
                        help=f"largest request body (default: {_DEFAULTS.max_body_size}); "
                             f"larger gets 413")
    parser.add_argument("--access-log", action="store_true",
                        help="log one INFO line per response (logger muxio.http.access)")
    parser.add_argument("--transport", choices=sorted(STREAM_TRANSPORTS), default="tcp",
                        help="stream transport (default: tcp; kcp runs over UDP)")
    add_server_arguments(parser, alpn=("http/1.1",))


_FLAGS = {"header_timeout": "--header-timeout", "keepalive_timeout": "--keepalive-timeout",
          "body_timeout": "--body-timeout", "max_body_size": "--max-body"}


def config_from(args: argparse.Namespace) -> HttpConfig:
    try:
        return HttpConfig(header_timeout=args.header_timeout,
                          keepalive_timeout=args.keepalive_timeout,
                          body_timeout=args.body_timeout, max_body_size=args.max_body)
    except ValueError as exc:
        message = str(exc)
        for field, flag in _FLAGS.items():
            message = message.replace(f"HttpConfig.{field}", flag)
        raise ConfigError(message) from None


def build_app(args: argparse.Namespace) -> App:
    if args.root is None:
        return hello_app()
    if not os.path.isdir(args.root):
        raise ConfigError(f"--root {args.root!r} is not a directory")
    router = Router()
    router.add("/", StaticFiles(args.root), ("GET",), prefix=True)
    return router


def protocol_factory(scheduler: Scheduler, args: argparse.Namespace) -> ProtocolFactory:
    """The handler factory, for any host (muxio's loop, or asyncio/uvloop/Twisted)."""
    # `muxio serve` turns the "muxio" loggers up to INFO; the access log stays off unless
    # asked for, since a line per request costs more than serving it.
    logging.getLogger("muxio.http.access").setLevel(
        logging.INFO if args.access_log else logging.WARNING)
    return http_protocol_factory(build_app(args), scheduler, config_from(args))


def start(loop: Loop, args: argparse.Namespace) -> TcpService:
    return TcpService(serve_stream(protocol_factory(loop, args), args, loop),
                      transport_label(args))
