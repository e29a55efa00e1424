"""A Service made of one stream server, TCP or KCP, with or without TLS (what echo, http
and chat need)."""

from __future__ import annotations

import argparse
import socket
from typing import Any

from muxio.cli.tls_options import server_context_from
from muxio.loop import Loop
from muxio.protocols import ProtocolFactory
from muxio.transports import tcp, tls
from muxio.transports.registry import stream_transport


def format_address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve_stream(factory: ProtocolFactory, args: argparse.Namespace, loop: Loop) -> Any:
    """`factory` served on `args.transport` (tcp unless given), over TLS with --tls-cert."""
    name = getattr(args, "transport", "tcp")
    options: dict[str, Any] = {}
    if name == "tcp":
        over: Any = tcp.serve
        options = {"backlog": args.backlog, "reuse_port": args.reuse_port}
    else:
        over = stream_transport(name).serve
    context = server_context_from(args)
    if context is None:
        return over(factory, args.host, args.port, loop=loop, **options)
    return tls.serve(factory, args.host, args.port, loop=loop, context=context, over=over,
                     handshake_timeout=args.tls_handshake_timeout, **options)


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
