"""The TCP write path on an edge-triggered poller: a short send is followed by waiting for
the next EPOLLOUT edge, never by a send that can only meet EAGAIN; every byte still
arrives, in order, to a reader that drains slowly."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports.tcp import TcpTransport

DEADLINE = 30.0
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several times both socket buffers


class CountingSocket:
    """The transport's socket, with its send outcomes counted."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0
        self.eagain = 0

    def send(self, data: Any) -> int:
        self.sends += 1
        try:
            return self.sock.send(data)
        except BlockingIOError:
            self.eagain += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Writer(Protocol):
    def connection_made(self, transport: Transport) -> None:
        transport.set_write_buffer_limits(high=len(PAYLOAD) * 2)  # no pause: one big write
        transport.write(PAYLOAD)


@pytest.mark.parametrize("edge_backend", ["epoll-et"])
def test_edge_triggered_writes_wait_for_the_edge_after_a_short_send(edge_backend: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before the window
    client.connect(listener.getsockname())
    server_side, _ = listener.accept()
    listener.close()
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    server_side.setblocking(False)
    client.setblocking(False)
    with Loop(edge_backend) as loop:
        transport = TcpTransport(loop, server_side, Writer())
        counting = CountingSocket(server_side)
        transport._sock = counting  # type: ignore[assignment]
        received = bytearray()
        deadline = time.monotonic() + DEADLINE
        try:
            while len(received) < len(PAYLOAD):
                assert time.monotonic() < deadline, f"{len(received)} bytes received"
                loop.run_once(0.01)
                try:
                    received += client.recv(32 * 1024)  # a slow reader: an edge per read
                except BlockingIOError:
                    pass
            assert received == PAYLOAD
            assert counting.sends > 3  # the payload went out in many short sends...
            assert counting.eagain == 0  # ...each one on an edge that had room for it
        finally:
            transport.abort()
            loop.run_once(0)
            client.close()
