"""The raw ring's completion-mode requests: multishot accept and recv into a provided
buffer ring, send from a bytes object, cancel. (The readiness poller is tested through
the contract; these are what a completion-mode transport and benchmarks/ build on.)"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest

from muxio.pollers.uring_buffers import BufferRing, bytes_address
from muxio.pollers.uring_poller import unavailable_reason
from muxio.pollers.uring_ring import (
    IORING_CQE_BUFFER_SHIFT,
    IORING_CQE_F_BUFFER,
    IORING_CQE_F_MORE,
    Ring,
)

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None and os.environ.get("CI") != "true",
                                reason=f"io_uring is not usable here: {REASON}")

RECV, SEND, ACCEPT, CANCEL = 1, 2, 3, 4


@pytest.fixture
def ring() -> Iterator[Ring]:
    created = Ring(sq_entries=8, cq_entries=64)
    yield created
    created.close()


def wait_for(ring: Ring, user_data: int, rounds: int = 50) -> list[tuple[int, int, int]]:
    """CQEs until one for `user_data` has come (each wait is bounded)."""
    seen: list[tuple[int, int, int]] = []
    for _ in range(rounds):
        seen += ring.submit_and_wait(1.0)
        if any(cqe[0] == user_data for cqe in seen):
            return seen
    raise AssertionError(f"no CQE for {user_data} in {seen}")


def test_multishot_recv_into_the_buffer_ring_then_eof(ring: Ring) -> None:
    left, right = socket.socketpair()
    buffers = BufferRing(ring, group=7, count=4, size=16)
    try:
        ring.prep_recv_multishot(left.fileno(), 7, RECV)
        received = bytearray()
        for chunk in (b"hello", b"x" * 40, b"!"):  # 40 bytes span several 16-byte buffers
            right.send(chunk)
            expected = len(received) + len(chunk)
            for _ in range(50):
                for user_data, res, flags in ring.submit_and_wait(1.0):
                    assert user_data == RECV and res > 0
                    assert flags & IORING_CQE_F_BUFFER and flags & IORING_CQE_F_MORE
                    received += buffers.take(flags >> IORING_CQE_BUFFER_SHIFT, res)
                if len(received) >= expected:
                    break
        assert bytes(received) == b"hello" + b"x" * 40 + b"!"
        right.close()
        (user_data, res, flags), = wait_for(ring, RECV)
        assert res == 0 and not flags & IORING_CQE_F_MORE  # EOF ends the multishot
    finally:
        left.close()
        right.close()
        buffers.close()


def test_send_from_a_bytes_object_with_waitall(ring: Ring) -> None:
    left, right = socket.socketpair()
    try:
        payload = b"muxio over io_uring " * 100
        ring.prep_send(left.fileno(), bytes_address(payload), len(payload),
                       socket.MSG_NOSIGNAL | socket.MSG_WAITALL, SEND)
        (user_data, res, _flags), = wait_for(ring, SEND)
        assert (user_data, res) == (SEND, len(payload))
        got = b""
        while len(got) < len(payload):
            got += right.recv(65536)
        assert got == payload
    finally:
        left.close()
        right.close()


def test_multishot_accept_then_cancel(ring: Ring) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    clients: list[socket.socket] = []
    accepted: list[int] = []
    try:
        ring.prep_accept_multishot(listener.fileno(), socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                   ACCEPT)
        ring.submit_and_wait(0)
        for _ in range(3):
            clients.append(socket.create_connection(listener.getsockname()))
        for _ in range(50):
            for user_data, res, flags in ring.submit_and_wait(1.0):
                assert user_data == ACCEPT and res >= 0 and flags & IORING_CQE_F_MORE
                accepted.append(res)
            if len(accepted) == 3:
                break
        assert len(accepted) == 3
        ring.prep_cancel(ACCEPT, CANCEL)
        (user_data, res, flags), = wait_for(ring, ACCEPT)
        assert res == -errno.ECANCELED and not flags & IORING_CQE_F_MORE
    finally:
        for fd in accepted:
            os.close(fd)
        for client in clients:
            client.close()
        listener.close()


def test_buffer_count_must_be_a_power_of_two(ring: Ring) -> None:
    with pytest.raises(ValueError, match="power of two"):
        BufferRing(ring, group=1, count=3, size=16)
