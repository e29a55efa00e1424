"""A Service made of one stream server, TCP or KCP (what echo, http and chat need)."""

from __future__ import annotations

import socket
from typing import Any


def format_address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
