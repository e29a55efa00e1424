"""Regressions of the core (loop, pollers, transports), each on every backend.

Every test here failed on at least one backend before its fix (named in the docstring) and
passed on the others: the backends disagreed, which is what the core promises never to do.
They drive a loop in this thread with `run_once`, so the interleaving is the test's own.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from muxio.errors import BadFdError
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing import FakeClock
from muxio.transports import tcp
from muxio.transports.kcp import transport as kcp

DEADLINE = 20.0


def run_until(loop: Loop, condition: Callable[[], bool], what: str,
              deadline: float = DEADLINE) -> None:
    """Run loop iterations until `condition()`; fail naming `what` at the deadline."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not reached within {deadline} s")
        loop.run_once(0.01)


class Recorder(Protocol):
    """Keeps the whole story of one connection."""

    def __init__(self) -> None:
        self.transport: Transport | None = None
        self.data = bytearray()
        self.eof = False
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


@pytest.fixture
def loop(backend: str) -> Iterator[Loop]:
    with Loop(backend) as new_loop:
        yield new_loop


def test_eof_after_a_long_read_continued_from_the_ready_queue(
        loop: Loop, monkeypatch: pytest.MonkeyPatch) -> None:
    """epoll-et lost the EOF: a read continued with call_soon looked at the poll mask of
    whichever fd was dispatched last, saw no HUP, and skipped the recv that finds the FIN.

    Reads are made small so that a few KiB need more reads than one wakeup allows."""
    monkeypatch.setattr(tcp, "MAX_READ", 512)
    protocols: list[Recorder] = []

    def factory() -> Recorder:
        protocols.append(Recorder())
        return protocols[-1]

    server = tcp.serve(factory, "127.0.0.1", 0, loop=loop)
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as long_one, \
                socket.create_connection(("127.0.0.1", server.port)) as short_one:
            run_until(loop, lambda: len(protocols) == 2, "both connections accepted")
            payload = os.urandom(512 * 40 + 100)  # 40 full reads, then a short one
            long_one.sendall(payload)
            long_one.shutdown(socket.SHUT_WR)
            short_one.sendall(b"x")  # its event is dispatched after the long one's
            first, second = protocols
            run_until(loop, lambda: len(first.data) == len(payload) and second.data == b"x",
                      "every byte delivered")
            run_until(loop, lambda: first.eof, "EOF of the long connection")
            assert bytes(first.data) == payload
            assert not second.eof
    finally:
        server.close()
        server.abort_clients()
        loop.run_once(0)


def test_a_due_timer_fires_once_when_a_reader_purges_the_heap(backend: str) -> None:
    """Every backend: a reader that cancelled more than half of 100+ timers rebuilt the
    heap under `_run_once`, which went on popping its stale alias; the due timer it had
    popped was still in the new heap and fired a second time."""
    clock = FakeClock(autojump=False)
    fired: list[str] = []
    with Loop(backend, clock=clock) as loop:
        far = [loop.call_later(1000.0, fired.append, "far") for _ in range(300)]
        loop.call_later(1.0, fired.append, "due")
        reader, writer = socket.socketpair()
        try:
            def cancel_far() -> None:
                reader.recv(16)
                for timer in far:
                    timer.cancel()

            loop.add_reader(reader, cancel_far)
            writer.send(b"!")
            clock.advance(2.0)
            for _ in range(5):
                loop.run_once(0.05)
            loop.remove_reader(reader)
        finally:
            reader.close()
            writer.close()
    assert fired == ["due"]


def test_a_reused_fd_number_is_watched(loop: Loop) -> None:
    """epoll went deaf: a socket closed without remove_reader, a new socket given the same
    number, and add_reader on it saw "interest unchanged", so the new file was never
    added to the epoll set (epoll had dropped the closed one). poll and select fired."""
    calls: list[str] = []
    old_reader, old_writer = socket.socketpair()
    loop.add_reader(old_reader, calls.append, "old")
    number = old_reader.fileno()
    old_reader.close()  # behind the loop's back
    new_reader, new_writer = socket.socketpair()
    if new_reader.fileno() != number:  # the pair may come out the other way round
        new_reader, new_writer = new_writer, new_reader
    try:
        assert new_reader.fileno() == number, "the kernel gives the lowest free number"
        loop.add_reader(new_reader, lambda: calls.append(new_reader.recv(16).decode()))
        new_writer.send(b"new")
        run_until(loop, lambda: bool(calls), "the new socket's reader")
        assert calls == ["new"]
        loop.remove_reader(new_reader)
    finally:
        for sock in (old_writer, new_reader, new_writer):
            sock.close()


def test_a_registered_fd_closed_behind_the_loops_back_is_dropped(
        loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    """select raised EBADF out of run_once (the loop died); poll reported POLLNVAL on every
    poll (a busy loop calling the reader); epoll dropped it silently. Now every backend
    drops the registration: its callback never runs again and the loop goes on."""
    calls: list[str] = []
    reader, writer = socket.socketpair()
    other_reader, other_writer = socket.socketpair()  # opened first: no number reuse here
    loop.add_reader(reader, calls.append, "stale")
    reader.close()
    try:
        got: list[bytes] = []
        loop.add_reader(other_reader, lambda: got.append(other_reader.recv(16)))
        other_writer.send(b"alive")
        run_until(loop, lambda: bool(got), "the other socket's reader")
        for _ in range(5):
            loop.run_once(0)
        assert calls == []
        assert got == [b"alive"]
        loop.remove_reader(other_reader)
    finally:
        for sock in (writer, other_reader, other_writer):
            sock.close()


def test_add_reader_on_an_already_closed_fd_never_runs_its_callback(loop: Loop) -> None:
    """The loop's pollers no longer fstat every register/modify (a syscall per connection
    and per write-buffer transition on poll/select): epoll still refuses a closed fd at
    once, poll and select report it at the next poll, and the loop drops it there. Either
    way its callback never runs and the loop goes on."""
    calls: list[str] = []
    sock = socket.socket()
    fd = sock.fileno()
    sock.close()
    try:
        loop.add_reader(fd, calls.append, "closed")
    except BadFdError:
        pass  # refused by the OS call itself (epoll, io_uring)
    for _ in range(3):
        loop.run_once(0)
    assert calls == []
    assert fd not in loop.poller
    assert not loop.remove_reader(fd)  # already forgotten


def test_stop_before_run_forever_is_not_lost(loop: Loop) -> None:
    """Every backend: `_start_running` cleared the stop flag, so run_forever blocked."""
    ran: list[int] = []
    loop.call_soon(ran.append, 1)
    loop.stop()
    loop.run_forever()  # returns after one iteration, as asyncio's does
    assert ran == [1]


def test_stopping_a_kcp_server_with_a_live_session(loop: Loop) -> None:
    """Every backend: closing the endpoint aborted its sessions first, the last one's
    `forget` closed the endpoint again, and the outer close passed fd -1 to remove_reader
    (`muxio serve --transport kcp` exited 2 on SIGTERM after serving anyone)."""
    server_side: list[Recorder] = []

    def factory() -> Recorder:
        server_side.append(Recorder())
        return server_side[-1]

    server = kcp.serve(factory, "127.0.0.1", 0, loop=loop)
    client = Recorder()
    future = kcp.connect(lambda: client, "127.0.0.1", server.port, loop=loop)
    run_until(loop, future.done, "the client session")
    client_transport, _ = future.result()
    client_transport.write(b"hello")
    run_until(loop, lambda: bool(server_side) and bool(server_side[0].data),
              "the server session")
    server.close()  # stop accepting: the live session goes on
    for endpoint in server.endpoints:
        endpoint.close()  # with its session still live
        endpoint.close()  # idempotent
    client_transport.abort()
    run_until(loop, lambda: bool(server_side[0].lost) and bool(client.lost),
              "both sides lost")
    assert all(sock.fileno() == -1 for sock in server.sockets)


def test_a_second_loop_cannot_silently_steal_signals(backend: str) -> None:
    """Every backend: `signal.set_wakeup_fd` is per process, so a second loop adding a
    signal handler took every signal away from the first one without a word."""
    import signal

    from muxio.errors import LoopError

    with Loop(backend) as first, Loop(backend) as second:
        first.add_signal_handler(signal.SIGUSR1, lambda: None)
        try:
            with pytest.raises(LoopError, match="already receives this process's signals"):
                second.add_signal_handler(signal.SIGUSR2, lambda: None)
        finally:
            first.remove_signal_handler(signal.SIGUSR1)
        second.add_signal_handler(signal.SIGUSR2, lambda: None)  # handed over
        assert second.remove_signal_handler(signal.SIGUSR2)


def test_wake_never_writes_to_a_closed_waker(backend: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backend: another thread's `call_soon_threadsafe` could write to the wakeup
    fd number after the loop closed it (and the number may belong to a new file by then).
    The write and the close now exclude each other."""
    import threading

    from muxio import loop as loop_module

    inside_write = threading.Event()
    closed = threading.Event()
    order: list[str] = []
    real_write = os.eventfd_write

    def slow_write(fd: int, value: int) -> None:
        inside_write.set()
        closed.wait(0.5)  # long enough for a close that does not wait for us to finish
        order.append("write")
        real_write(fd, value)

    loop = Loop(backend)
    monkeypatch.setattr(loop_module.os, "eventfd_write", slow_write)
    waker = threading.Thread(target=loop._waker.wake)
    waker.start()
    assert inside_write.wait(DEADLINE)
    loop.close()
    order.append("close")
    closed.set()
    waker.join(DEADLINE)
    assert order == ["write", "close"]
