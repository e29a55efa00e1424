"""The poller contract, run on every backend available here."""

from __future__ import annotations

import os
import resource
import socket
import struct
import tempfile
from collections.abc import Iterator

import pytest

from muxio.errors import (
    BadFdError,
    FdAlreadyRegisteredError,
    FdLimitError,
    FdNotRegisteredError,
    PollerClosedError,
    UnsupportedFileError,
)
from muxio.pollers import ERROR, HUP, READ, WRITE, Poller, default_registry


@pytest.fixture
def poller(poller_backend: str) -> Iterator[Poller]:
    with default_registry().create(poller_backend) as created:
        yield created


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    yield left, right
    left.close()
    right.close()


def events_for(poller: Poller, fd: int, timeout: float | None = 0) -> int:
    return sum(ev for got_fd, ev in poller.poll(timeout) if got_fd == fd)


def test_read_readiness_on_socketpair(poller: Poller,
                                      pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    poller.register(left, READ)
    assert events_for(poller, left.fileno()) == 0
    right.send(b"ping")
    assert events_for(poller, left.fileno(), timeout=5) & READ


def test_read_readiness_on_pipe(poller: Poller) -> None:
    read_fd, write_fd = os.pipe()
    try:
        poller.register(read_fd, READ)
        assert poller.poll(0) == []
        os.write(write_fd, b"x")
        assert events_for(poller, read_fd, timeout=5) & READ
    finally:
        poller.unregister(read_fd)
        os.close(read_fd)
        os.close(write_fd)


def test_write_readiness(poller: Poller, pair: tuple[socket.socket, socket.socket]) -> None:
    left, _ = pair
    poller.register(left, WRITE)
    assert events_for(poller, left.fileno(), timeout=5) & WRITE


def test_full_socket_is_not_writable(poller: Poller,
                                     pair: tuple[socket.socket, socket.socket]) -> None:
    left, _ = pair
    chunk = b"x" * 65536
    while True:
        try:
            left.send(chunk)
        except BlockingIOError:
            break
    poller.register(left, WRITE)
    assert not events_for(poller, left.fileno()) & WRITE


def test_peer_close_is_reported(poller: Poller,
                                pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    poller.register(left, READ)
    right.close()
    events = events_for(poller, left.fileno(), timeout=5)
    # select and selectors report a hang-up as readability; poll/epoll may add HUP.
    assert events & (READ | HUP)
    if poller.capabilities.reports_hup:
        assert events & (HUP | READ)
    assert left.recv(10) == b""


def test_modify_changes_interest(poller: Poller,
                                 pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    poller.register(left, READ)
    assert not events_for(poller, left.fileno()) & WRITE
    poller.modify(left, READ | WRITE)
    assert events_for(poller, left.fileno(), timeout=5) & WRITE
    poller.modify(left, 0)
    right.send(b"data")
    assert events_for(poller, left.fileno()) & (READ | WRITE) == 0
    assert poller.registered() == {left.fileno(): 0}


def test_unregister_stops_reports(poller: Poller,
                                  pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    poller.register(left, READ)
    right.send(b"x")
    poller.unregister(left)
    assert events_for(poller, left.fileno()) == 0
    assert left not in poller
    poller.register(left, READ)  # and it can come back
    assert events_for(poller, left.fileno(), timeout=5) & READ


def test_register_twice_raises(poller: Poller, pair: tuple[socket.socket, socket.socket]) -> None:
    left, _ = pair
    poller.register(left, READ)
    with pytest.raises(FdAlreadyRegisteredError, match="modify"):
        poller.register(left, WRITE)
    assert poller.registered() == {left.fileno(): READ}


def test_unknown_fd_raises(poller: Poller, pair: tuple[socket.socket, socket.socket]) -> None:
    left, _ = pair
    with pytest.raises(FdNotRegisteredError):
        poller.modify(left, READ)
    with pytest.raises(FdNotRegisteredError):
        poller.unregister(left)


def test_closed_fd_raises_on_register(poller: Poller) -> None:
    sock = socket.socket()
    fd = sock.fileno()
    sock.close()
    with pytest.raises(BadFdError):
        poller.register(fd, READ)
    with pytest.raises(BadFdError):
        poller.register(sock, READ)  # fileno() of a closed socket is -1
    assert len(poller) == 0


def test_modify_closed_fd_raises_and_unregister_does_not(poller: Poller) -> None:
    left, right = socket.socketpair()
    fd = left.fileno()
    poller.register(fd, READ)
    left.close()
    right.close()
    with pytest.raises(BadFdError):
        poller.modify(fd, READ | WRITE)
    poller.unregister(fd)  # closed behind our back: unregister still cleans up
    assert len(poller) == 0


def test_closed_poller_raises(poller_backend: str,
                              pair: tuple[socket.socket, socket.socket]) -> None:
    poller = default_registry().create(poller_backend)
    poller.close()
    poller.close()  # idempotent
    for call in (lambda: poller.register(pair[0], READ), lambda: poller.modify(pair[0], READ),
                 lambda: poller.unregister(pair[0]), lambda: poller.poll(0)):
        with pytest.raises(PollerClosedError):
            call()


def test_invalid_event_mask(poller: Poller, pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(ValueError, match="event mask"):
        poller.register(pair[0], 0x4000)


def test_level_or_edge_triggering(poller: Poller,
                                  pair: tuple[socket.socket, socket.socket]) -> None:
    """20 bytes arrive, the reader takes 15: LT reports again, ET stays silent."""
    left, right = pair
    poller.register(left, READ)
    right.send(b"x" * 20)
    assert events_for(poller, left.fileno(), timeout=5) & READ
    assert left.recv(15) == b"x" * 15
    again = events_for(poller, left.fileno())
    if poller.capabilities.edge_triggered:
        assert again == 0
        right.send(b"y")  # new data is a new edge
        assert events_for(poller, left.fileno(), timeout=5) & READ
        assert left.recv(100) == b"x" * 5 + b"y"
    else:
        assert again & READ
        assert left.recv(100) == b"x" * 5


def test_spurious_readiness_is_tolerated(poller: Poller,
                                         pair: tuple[socket.socket, socket.socket]) -> None:
    """A ready report does not promise data: a second reader may have taken it."""
    left, right = pair
    poller.register(left, READ)
    right.send(b"z")
    assert events_for(poller, left.fileno(), timeout=5) & READ
    assert left.recv(1) == b"z"
    with pytest.raises(BlockingIOError):
        left.recv(1)


def test_regular_file(poller: Poller) -> None:
    with tempfile.TemporaryFile() as handle:
        if poller.name in ("epoll", "epoll-et", "selectors-epoll") or (
                poller.name == "selectors" and "Epoll" in repr(getattr(poller, "selector", ""))):
            with pytest.raises(UnsupportedFileError, match="regular file"):
                poller.register(handle, READ)
            assert len(poller) == 0
        else:
            poller.register(handle, READ)
            assert events_for(poller, handle.fileno(), timeout=5) & READ


def test_statistics(poller: Poller, pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    poller.register(left, READ)
    right.send(b"x")
    poller.poll(5)
    stats = poller.statistics()
    assert stats.backend == poller.name
    assert stats.registered_fds == 1
    assert stats.polls == 1
    assert stats.events == 1
    assert stats.edge_triggered == poller.capabilities.edge_triggered


def test_peer_reset_is_reported_without_asking(poller: Poller) -> None:
    """A TCP RST makes the fd report an error (select: as readiness) even if not asked."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.setblocking(False)
        # Fill the send side so WRITE is not already true: only the RST can wake us.
        while True:
            try:
                client.send(b"x" * 65536)
            except BlockingIOError:
                break
        poller.register(client, WRITE)
        assert events_for(poller, client.fileno()) == 0
        server.close()  # SO_LINGER 0: close sends RST
        events = events_for(poller, client.fileno(), timeout=5)
        if poller.capabilities.reports_hup:
            assert events & (ERROR | HUP)
        else:
            assert events & WRITE
        with pytest.raises(ConnectionResetError):
            client.send(b"x")
    finally:
        client.close()
        server.close()


def _raise_fd_limit(minimum: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < minimum:
        if hard != resource.RLIM_INFINITY and hard < minimum:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {minimum}: raise it (ulimit -n)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (minimum, hard))


def test_fd_limit_checked_at_register(poller: Poller) -> None:
    """select cannot watch fd >= FD_SETSIZE: a clear error naming poll/epoll, not a crash."""
    _raise_fd_limit(2048)
    sock = socket.socket()
    high_fd = os.dup2(sock.fileno(), 1500)
    try:
        limit = poller.capabilities.max_fd
        if limit is not None and high_fd >= limit:
            with pytest.raises(FdLimitError, match="poll.*epoll"):
                poller.register(high_fd, READ)
            assert len(poller) == 0
        else:
            poller.register(high_fd, READ)
            assert high_fd in poller
            poller.unregister(high_fd)
    finally:
        os.close(high_fd)
        sock.close()
