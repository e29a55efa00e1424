"""Services that `muxio serve NAME` can run: a handler wired to a transport server.

One module per service, listed in `SERVICES`. A service module provides:

    DESCRIPTION: str
    DEFAULT_PORT: int
    def add_arguments(parser: argparse.ArgumentParser) -> None    # its own options
    def start(loop: Loop, args: argparse.Namespace) -> Service      # start serving

The common options (--host, --port, --backend, --backlog, --reuse-port) are added by
`muxio serve` itself. The handler comes from its package's hosting shape
(`muxio.handlers`: `add_arguments`, `config_from`, `protocol_factory`), the listener from
the stream transport registry through `muxio.serve`: no service knows a transport by name.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from muxio.api import serve
from muxio.cli.tls_options import server_context_from
from muxio.errors import ConfigError
from muxio.handlers import HostedHandler
from muxio.loop import Loop
from muxio.protocols import ProtocolFactory
from muxio.transports.registry import STREAM_TRANSPORTS, stream_transport

SERVICES: dict[str, str] = {
    "echo": "muxio.cli.services.echo",
    "http": "muxio.cli.services.http",
    "chat": "muxio.cli.services.chat",
    "dns": "muxio.cli.services.dns",
}

_LISTEN_FLAGS = {"backlog": "--backlog", "reuse_port": "--reuse-port"}
"""Common `muxio serve` flags that are options of some transports' `serve` only."""


class Service(Protocol):
    """A running service: where it listens, and how to stop it cleanly."""

    def describe(self) -> str:
        """e.g. 'tcp 127.0.0.1:8080, tcp [::1]:8080'."""
        ...

    def close(self) -> None:
        """Stop listening and close every connection (called in the loop thread)."""
        ...


class ServiceModule(Protocol):
    DESCRIPTION: str
    DEFAULT_PORT: int

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def start(self, loop: Loop, args: argparse.Namespace) -> Service: ...


def add_transport_argument(parser: argparse.ArgumentParser) -> None:
    """`--transport NAME`, one of the registered stream transports."""
    parser.add_argument("--transport", choices=sorted(STREAM_TRANSPORTS), default="tcp",
                        help="stream transport (default: tcp; kcp runs over UDP)")


def handler_config(handler: HostedHandler, args: argparse.Namespace) -> Any:
    """The handler's config from the parsed flags; its ValueError (which names the flag)
    becomes a ConfigError, printed as one `muxio: error:` line."""
    try:
        return handler.config_from(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def serve_stream(factory: ProtocolFactory, loop: Loop, args: argparse.Namespace) -> Any:
    """Listen on `args.transport` with the common flags the user set, over TLS with
    --tls-cert; returns that transport's server object (a TlsServer around it with TLS). A
    flag the transport does not take is a ConfigError."""
    spec = stream_transport(getattr(args, "transport", "tcp"))
    options: dict[str, Any] = {}
    if getattr(args, "backlog", None) is not None:
        options["backlog"] = args.backlog
    if getattr(args, "reuse_port", False):
        options["reuse_port"] = True
    refused = [_LISTEN_FLAGS[name] for name in options if name not in spec.serve_options]
    if refused:
        raise ConfigError(f"{', '.join(refused)} does not apply to --transport {spec.name}; "
                          f"drop it or use --transport tcp")
    context = server_context_from(args)
    if context is not None:
        options["handshake_timeout"] = args.tls_handshake_timeout
    return serve(factory, args.host, args.port, transport=spec.name, loop=loop, tls=context,
                 **options).listener
