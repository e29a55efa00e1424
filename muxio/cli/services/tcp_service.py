"""A Service made of one stream server, TCP or KCP, with or without TLS (what echo, http
and chat need); the server itself comes from `muxio.cli.services.serve_stream`."""

from __future__ import annotations

import argparse
import socket
from typing import Any


def format_address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def transport_label(args: argparse.Namespace) -> str:
    """'tcp', 'kcp', 'tls+tcp'... as `describe()` shows it."""
    name = getattr(args, "transport", "tcp")
    return f"tls+{name}" if getattr(args, "tls_cert", None) else name


class TcpService:
    def __init__(self, server: Any, transport: str = "tcp") -> None:
        self.server = server
        self.transport = transport

    def describe(self) -> str:
        return ", ".join(f"{self.transport} {format_address(sock.getsockname())}"
                         for sock in self.server.sockets if sock.family != socket.AF_UNIX)

    def close(self) -> None:
        self.server.close()
        self.server.close_clients()
