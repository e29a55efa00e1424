"""A Service made of one stream server, TCP or KCP, with or without TLS (what echo, http
and chat need); the server itself comes from `muxio.cli.services.serve_stream`."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from typing import Any


def format_address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def transport_label(args: argparse.Namespace) -> str:
    """'tcp', 'kcp', 'tls+tcp'... as `describe()` shows it."""
    name = getattr(args, "transport", "tcp")
    return f"tls+{name}" if getattr(args, "tls_cert", None) else name


class TcpService:
    """One stream server. `drain()` (a graceful stop, see muxio.cli.graceful) stops
    accepting, then calls `on_drain` (default: close every connection once its output is
    sent)."""

    def __init__(self, server: Any, transport: str = "tcp",
                 on_drain: Callable[[], None] | None = None) -> None:
        self.server = server
        self.transport = transport
        self.on_drain = on_drain

    def drain(self) -> None:
        # TLS wraps the transport's server; the queue to accept is the inner one's.
        listener = getattr(self.server, "inner", None) or self.server
        accept_queued = getattr(listener, "accept_queued", None)
        if accept_queued is not None:
            accept_queued()
        self.server.close()
        (self.on_drain or self.server.close_clients)()

    def open_connections(self) -> int:
        return len(self.server.connections)

    def describe(self) -> str:
        return ", ".join(f"{self.transport} {format_address(sock.getsockname())}"
                         for sock in self.server.sockets if sock.family != socket.AF_UNIX)

    def close(self) -> None:
        self.server.close()
        self.server.close_clients()
