"""The TCP write path on an edge-triggered poller: a short send is followed by waiting for
the next EPOLLOUT edge, never by a send that can only meet EAGAIN; every byte still
arrives, in order, to a reader that drains slowly. The socket is armed for READ|WRITE once,
at its first short send: buffering and draining change no interest after that (no
epoll_ctl), and an EPOLLOUT edge that comes with nothing buffered reaches no writer."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from muxio.loop import Loop
from muxio.pollers import READ, WRITE
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


class CountingPoller:
    """Counts the loop's register/modify/unregister calls on its poller."""

    def __init__(self, loop: Loop) -> None:
        self.calls: list[tuple[str, int, int]] = []
        poller = loop.poller
        self._modify = poller.modify
        self._register = poller.register
        poller.modify = self.modify  # type: ignore[method-assign]
        poller.register = self.register  # type: ignore[method-assign]

    def modify(self, fd: Any, events: int) -> None:
        self.calls.append(("modify", fd, events))
        self._modify(fd, events)

    def register(self, fd: Any, events: int) -> None:
        self.calls.append(("register", fd, events))
        self._register(fd, events)


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
        interest = CountingPoller(loop)
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
            # Armed for READ|WRITE once, at the first short send; the buffer filled and
            # drained many times after that with no other epoll_ctl.
            fd = server_side.fileno()
            assert interest.calls == [("register", fd, READ), ("modify", fd, READ | WRITE)]
            assert loop.poller.registered()[fd] == READ | WRITE
        finally:
            transport.abort()
            loop.run_once(0)
            client.close()


class Echo(Protocol):
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def drain_into(loop: Loop, client: socket.socket, size: int) -> bytes:
    """Run the loop and read from `client` until `size` bytes came."""
    got = bytearray()
    deadline = time.monotonic() + DEADLINE
    while len(got) < size:
        assert time.monotonic() < deadline, f"{len(got)} of {size} bytes"
        loop.run_once(0.01)
        try:
            got += client.recv(256 * 1024)
        except BlockingIOError:
            pass
    return bytes(got)


@pytest.mark.parametrize("edge_backend", ["epoll-et"])
def test_an_epollout_edge_with_nothing_buffered_reaches_no_writer(edge_backend: str) -> None:
    """A connection whose buffer never filled is armed for READ only. Once a short send
    armed WRITE, every data arrival on the idle socket reports OUT too: the loop finds no
    writer for it (one dict lookup), so no send and no interest change follow."""
    server_side, client = socket.socketpair()
    server_side.setblocking(False)
    client.setblocking(False)
    fd = server_side.fileno()
    with Loop(edge_backend) as loop:
        interest = CountingPoller(loop)
        transport = TcpTransport(loop, server_side, Echo())
        counting = CountingSocket(server_side)
        transport._sock = counting  # type: ignore[assignment]
        outs: list[int] = []
        poll = loop.poller.poll

        def watching_poll(timeout: float | None = None) -> list[tuple[int, int]]:
            events = poll(timeout)
            outs.extend(mask & WRITE for ready, mask in events if ready == fd)
            return events

        loop.poller.poll = watching_poll  # type: ignore[method-assign]
        try:
            client.send(b"ping")
            assert drain_into(loop, client, 4) == b"ping"
            assert interest.calls == [("register", fd, READ)]  # never armed for WRITE
            assert not any(outs)
            transport.set_write_buffer_limits(high=len(PAYLOAD) * 2)
            transport.write(PAYLOAD)  # several times the socket buffers: a short send
            assert drain_into(loop, client, len(PAYLOAD)) == PAYLOAD
            assert interest.calls == [("register", fd, READ), ("modify", fd, READ | WRITE)]
            sends, outs[:] = counting.sends, []
            for round_number in range(5):
                message = b"ping %d" % round_number
                client.send(message)
                assert drain_into(loop, client, len(message)) == message
            assert any(outs), "the poller reported OUT with the data (READ|WRITE armed)"
            assert counting.sends == sends + 5  # one per echo: no writer ran on those OUTs
            assert interest.calls == [("register", fd, READ), ("modify", fd, READ | WRITE)]
        finally:
            transport.abort()
            loop.run_once(0)
            client.close()
