"""`Loop.flush()`: the hook muxio.aio uses so that writes made between iterations leave
before the host stops (the additive change muxio.aio needed in muxio/loop.py)."""

from __future__ import annotations

import socket

from muxio.loop import Loop
from muxio.protocols import Protocol
from muxio.transports.tcp import TcpTransport


def test_flush_runs_before_poll_callbacks_now(backend: str) -> None:
    order: list[str] = []
    with Loop(backend) as loop:
        loop.call_before_poll(lambda: order.append("first"))
        loop.call_before_poll(lambda: order.append("second"))
        loop.flush()
        assert order == ["first", "second"]
        loop.flush()  # nothing queued: nothing runs twice
        assert order == ["first", "second"]


def test_flush_sends_a_write_made_outside_the_loop(backend: str) -> None:
    left, right = socket.socketpair()
    right.settimeout(10)
    with Loop(backend) as loop:
        left.setblocking(False)
        transport = TcpTransport(loop, left, Protocol())
        transport.write(b"queued until the next poll")
        loop.flush()
        assert right.recv(100) == b"queued until the next poll"
        transport.abort()
        loop.run_once()
    right.close()
