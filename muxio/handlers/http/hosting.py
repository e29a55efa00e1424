"""What a host needs to run the HTTP server (the shape described in `muxio.handlers`): its
command-line options, the config they make (limits, the app: hello or static files, the
access log), and the protocol factory.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field

from muxio.handlers.http.app import App, Router, hello_app
from muxio.handlers.http.config import HttpConfig
from muxio.handlers.http.minimal import MinimalHttpProtocol
from muxio.handlers.http.protocol import access_log, http_protocol_factory
from muxio.handlers.http.static import StaticFiles
from muxio.protocols import ProtocolFactory, Scheduler

DESCRIPTION = "HTTP/1.1: 'Hello, World!' on GET /, or static files with --root (TCP)"
_DEFAULTS = HttpConfig()
_FLAGS = {"header_timeout": "--header-timeout", "keepalive_timeout": "--keepalive-timeout",
          "body_timeout": "--body-timeout", "send_timeout": "--send-timeout",
          "max_body_size": "--max-body"}
ALPN: tuple[str, ...] = ("http/1.1",)
"""What a TLS host offers in ALPN (RFC 7301: HTTP/1.1)."""


@dataclass(frozen=True, kw_only=True)
class HttpServiceConfig:
    """Everything the hosted HTTP server needs: limits, what it serves, what it logs."""

    http: HttpConfig = field(default_factory=HttpConfig)
    """Limits and timeouts of every connection."""
    root: str | None = None
    """Serve the files under this directory; None serves the hello endpoint."""
    access_log: bool = False
    """Log one INFO line per response (logger muxio.http.access)."""
    minimal: bool = False
    """Host the benchmark baseline (`MinimalHttpProtocol`: a fixed 200, no limits) instead
    of the handler; `muxio bench http --protocol minimal` measures the handler against it."""

    def __post_init__(self) -> None:
        if self.minimal and (self.root is not None or self.access_log):
            raise ValueError("--protocol minimal answers every request with a fixed 200: "
                             "it has no --root and no --access-log; drop them or use "
                             "--protocol full")
        if self.root is not None and not os.path.isdir(self.root):
            raise ValueError(f"--root {self.root!r} is not a directory")

    def app(self) -> App:
        """The hello endpoint, or the static files under `root` (GET/HEAD)."""
        if self.root is None:
            return hello_app()
        router = Router()
        router.add("/", StaticFiles(self.root), ("GET",), prefix=True)
        return router


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """What to serve, the timeouts and the body limit, as flags."""
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
    parser.add_argument("--send-timeout", type=float, metavar="S",
                        default=_DEFAULTS.send_timeout,
                        help="abort a connection whose client takes no byte of a pending "
                             f"response for S seconds (default: {_DEFAULTS.send_timeout:g})")
    parser.add_argument("--max-body", type=int, metavar="BYTES",
                        default=_DEFAULTS.max_body_size,
                        help=f"largest request body (default: {_DEFAULTS.max_body_size}); "
                             f"larger gets 413")
    parser.add_argument("--access-log", action="store_true",
                        help="log one INFO line per response (logger muxio.http.access)")
    parser.add_argument("--protocol", choices=("full", "minimal"), default="full",
                        help="full: muxio's HTTP handler (default); minimal: a fixed 200 "
                             "from a bare httptools protocol, the baseline `muxio bench "
                             "http --protocol minimal` measures the handler against (no "
                             "limits, no timeouts: never expose it)")


def config_from(args: argparse.Namespace) -> HttpServiceConfig:
    """The service config; a ValueError names the command-line flag at fault."""
    try:
        http = HttpConfig(header_timeout=args.header_timeout,
                          keepalive_timeout=args.keepalive_timeout,
                          body_timeout=args.body_timeout, send_timeout=args.send_timeout,
                          max_body_size=args.max_body)
    except ValueError as exc:
        message = str(exc)
        for name, flag in _FLAGS.items():
            message = message.replace(f"HttpConfig.{name}", flag)
        raise ValueError(message) from None
    return HttpServiceConfig(http=http, root=args.root, access_log=args.access_log,
                             minimal=getattr(args, "protocol", "full") == "minimal")


def protocol_factory(scheduler: Scheduler, config: HttpServiceConfig | None = None, *,
                     app: App | None = None) -> ProtocolFactory:
    """An HttpProtocol per connection, serving the configured app (or `app`: a host that
    wraps it, e.g. to answer with `Connection: close` during a graceful stop)."""
    config = config or HttpServiceConfig()
    if config.minimal:
        return MinimalHttpProtocol
    # A host may turn the "muxio" loggers up to INFO; the access log stays off unless
    # asked for, since a line per request costs more than serving it.
    access_log.setLevel(logging.INFO if config.access_log else logging.WARNING)
    return http_protocol_factory(app or config.app(), scheduler, config.http)
