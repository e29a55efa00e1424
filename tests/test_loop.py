"""The event loop on every backend: timers, call_soon, wakeups, signals, stop, close."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator

import pytest

from muxio.errors import LoopClosedError, LoopRunningError, LoopTimeoutError
from muxio.futures import Future
from muxio.loop import Loop
from muxio.testing import FakeClock


@pytest.fixture
def loop(backend: str) -> Iterator[Loop]:
    with Loop(backend) as created:
        yield created


@pytest.fixture
def fake_loop(backend: str) -> Iterator[tuple[Loop, FakeClock]]:
    clock = FakeClock()
    with Loop(backend, clock=clock) as created:
        yield created, clock


def test_loop_uses_the_backend_asked_for(loop: Loop, backend: str) -> None:
    assert loop.backend == backend
    assert loop.statistics().backend == backend


def test_call_soon_is_fifo(loop: Loop) -> None:
    order: list[int] = []
    for i in range(10):
        loop.call_soon(order.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == list(range(10))


def test_timers_fire_in_order_and_cancelled_ones_never(
        fake_loop: tuple[Loop, FakeClock]) -> None:
    loop, clock = fake_loop
    fired: list[str] = []
    loop.call_later(3.0, fired.append, "c")
    loop.call_later(1.0, fired.append, "a")
    loop.call_later(2.0, fired.append, "b")
    loop.call_later(2.0, fired.append, "b2")  # same deadline: scheduling order
    loop.call_later(1.5, fired.append, "x").cancel()
    loop.call_later(10.0, loop.stop)
    loop.run_forever()
    assert fired == ["a", "b", "b2", "c"]
    assert clock.monotonic() == pytest.approx(10.0)


def test_call_at_uses_loop_time(fake_loop: tuple[Loop, FakeClock]) -> None:
    loop, clock = fake_loop
    clock.advance(100.0)
    seen: list[float] = []
    loop.call_at(105.0, lambda: seen.append(loop.time()))
    loop.run_until(lambda: bool(seen), timeout=60)
    assert seen == [105.0]


def test_cancelled_timers_do_not_accumulate(loop: Loop) -> None:
    handles = [loop.call_later(1000.0 + i, lambda: None) for i in range(1000)]
    for handle in handles[:900]:
        handle.cancel()
    assert len(loop._timers) < 1000
    assert loop.pending_timers() == 100
    for handle in handles[900:]:
        handle.cancel()
    assert loop.pending_timers() == 0


def test_cancel_after_fire_is_harmless(fake_loop: tuple[Loop, FakeClock]) -> None:
    loop, _ = fake_loop
    fired: list[int] = []
    handle = loop.call_later(1.0, fired.append, 1)
    loop.run_until(lambda: bool(fired), timeout=5)
    cancelled_before = loop._cancelled_timers
    handle.cancel()
    assert loop._cancelled_timers == cancelled_before


def test_wakeup_from_another_thread_while_blocked(loop: Loop) -> None:
    """No timer is pending: the loop blocks in poll and only the wakeup fd can end it."""
    entered = threading.Event()
    results: list[str] = []

    def other_thread() -> None:
        entered.wait(10)
        loop.call_soon_threadsafe(results.append, "from thread")
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(entered.set)
    thread = threading.Thread(target=other_thread)
    thread.start()
    loop.run_forever()
    thread.join()
    assert results == ["from thread"]
    assert loop.pending_timers() == 0
    assert loop.statistics().polls < 10  # woken by the fd, not by polling on a timeout


def test_stop_from_another_thread(loop: Loop) -> None:
    entered = threading.Event()
    loop.call_soon(entered.set)
    def stopper() -> None:
        entered.wait(10)
        loop.stop()

    thread = threading.Thread(target=stopper)
    thread.start()
    loop.run_forever()
    thread.join()
    assert not loop.is_running()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals (SIGUSR1)")
def test_signal_runs_its_handler(loop: Loop) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread; this runner is not on it")
    received: list[int] = []
    loop.add_signal_handler(signal.SIGUSR1, received.append, 42)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.run_until(lambda: bool(received), timeout=10)
    assert received == [42]
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_stop_from_a_callback(loop: Loop) -> None:
    ran: list[int] = []
    loop.call_soon(loop.stop)
    loop.call_soon(ran.append, 1)
    loop.run_forever()
    loop.call_soon(ran.append, 2)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [1, 2]


def test_exception_in_callback_is_logged_and_loop_goes_on(
        loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("callback bug")

    loop.call_soon(broken)
    loop.call_soon(ran.append, "after")
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="muxio.loop"):
        loop.run_forever()
    assert ran == ["after"]
    assert "callback bug" in caplog.text


def test_custom_exception_handler(loop: Loop) -> None:
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    loop.call_soon(lambda: 1 / 0)
    loop.run_once()
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)


def test_reader_and_writer_callbacks(loop: Loop) -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        got: list[bytes] = []
        loop.add_reader(left, lambda: got.append(left.recv(100)))
        right.send(b"hello")
        loop.run_until(lambda: bool(got), timeout=10)
        assert got == [b"hello"]
        assert loop.remove_reader(left)
        assert not loop.remove_reader(left)
        writable: list[bool] = []
        def on_writable() -> None:
            writable.append(True)
            loop.remove_writer(left)

        loop.add_writer(left, on_writable)
        loop.run_until(lambda: bool(writable), timeout=10)
        assert len(loop.poller) == 1  # only the loop's own wakeup fd remains
    finally:
        left.close()
        right.close()


def test_run_until_times_out(loop: Loop) -> None:
    with pytest.raises(LoopTimeoutError):
        loop.run_until(lambda: False, timeout=0.05)
    assert loop.pending_timers() == 0


def test_run_until_complete_with_future(fake_loop: tuple[Loop, FakeClock]) -> None:
    loop, _ = fake_loop
    future: Future[str] = loop.create_future()
    loop.call_later(5.0, future.set_result, "done")
    assert loop.run_until_complete(future, timeout=60) == "done"


def test_nested_run_is_refused(loop: Loop) -> None:
    errors: list[Exception] = []

    def nested() -> None:
        try:
            loop.run_once()
        except LoopRunningError as exc:
            errors.append(exc)
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert len(errors) == 1


def test_close_leaves_no_fd_open(backend: str) -> None:
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        loop = Loop(backend)
        if threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGUSR2, lambda: None)
        loop.call_later(1.0, lambda: None)
        loop.run_once()
        loop.close()
        loop.close()  # idempotent
    assert set(os.listdir("/proc/self/fd")) == before
    with pytest.raises(LoopClosedError):
        loop.call_soon(print)


def test_call_before_poll_runs_after_the_ready_callbacks_once(loop: Loop) -> None:
    order: list[str] = []

    def flush() -> None:
        order.append("flush")
        if order.count("flush") == 1:
            loop.call_before_poll(lambda: order.append("added while flushing"))

    def callback() -> None:
        order.append("callback")
        loop.call_before_poll(flush)

    loop.call_soon(callback)
    loop.run_once()
    assert order == ["callback", "flush", "added while flushing"]
    loop.run_once()
    assert order == ["callback", "flush", "added while flushing"]  # ran once only


def test_call_before_poll_from_outside_runs_before_blocking(loop: Loop) -> None:
    ran: list[bool] = []
    loop.call_before_poll(lambda: ran.append(True))
    loop.run_until(lambda: bool(ran), timeout=5)  # would block in poll if it waited
    assert ran == [True]


def test_call_before_poll_failure_is_reported_and_the_rest_run(
        loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise ValueError("broken flush")

    loop.call_before_poll(broken)
    loop.call_before_poll(lambda: ran.append("next"))
    with caplog.at_level(logging.ERROR, logger="muxio.loop"):
        loop.run_once()
    assert ran == ["next"]
    assert "broken flush" in caplog.text
