"""A small, typed Future: a result that arrives later, with done-callbacks.

Loop-agnostic (callbacks are scheduled through any object with `call_soon`), so the
resolver, `tcp.connect` and other clients hand results to callers without depending
on asyncio. `Loop.run_until_complete(future)` runs a muxio loop until it is done.

Awaitable from asyncio code (decided for issue 15: muxio keeps its own Future, rather
than asyncio's, so the floors below muxio.aio stay free of asyncio; `await` bridges the
two). `await future` inside a coroutine running on any asyncio loop (asyncio's own,
uvloop, muxio.aio) waits on an asyncio future of the running loop that this future
completes. Two things make that work:
- this future's callbacks run on its scheduler, so that scheduler must be running: on
  muxio.aio it is (`EventLoop.muxio_loop` is driven by the asyncio loop; pass it to muxio
  APIs), and a muxio Loop running in another thread works too (the completion is handed
  over with `call_soon_threadsafe`);
- cancelling the awaiting task cancels this future, and awaiting a future that was
  cancelled raises `asyncio.CancelledError`, as awaiting an asyncio future does.
`asyncio.wrap_future` does not accept it (that is for concurrent.futures); use `await`
or `asyncio.ensure_future(future)`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

from muxio.errors import MuxioError

T = TypeVar("T")


class CancelledError(MuxioError):
    """The future was cancelled before it got a result."""


class InvalidStateError(MuxioError):
    """The future is not in a state that allows this call (e.g. result() while pending)."""


class Scheduler(Protocol):
    def call_soon(self, callback: Callable[..., object], *args: object) -> object: ...


class Future(Generic[T]):
    """A result (or exception) that becomes available later."""

    __slots__ = ("_scheduler", "_state", "_result", "_exception", "_callbacks")

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._state = "pending"
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], object]] = []

    def done(self) -> bool:
        """True once it has a result, an exception, or was cancelled."""
        return self._state != "pending"

    def cancelled(self) -> bool:
        """True if `cancel()` got to it first."""
        return self._state == "cancelled"

    def result(self) -> T:
        """The result; raises the exception instead if it failed, CancelledError if it was
        cancelled, InvalidStateError while pending."""
        if self._state == "cancelled":
            raise CancelledError("the future was cancelled")
        if self._state == "pending":
            raise InvalidStateError("the result is not ready; run the loop until done()")
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        """The exception it failed with, or None if it has a result."""
        if self._state == "pending":
            raise InvalidStateError("the future is still pending")
        if self._state == "cancelled":
            raise CancelledError("the future was cancelled")
        return self._exception

    def set_result(self, result: T) -> None:
        """Complete it with `result` (once); the done-callbacks are scheduled."""
        self._finish("done")
        self._result = result
        self._schedule_callbacks()

    def set_exception(self, exception: BaseException) -> None:
        """Complete it with `exception` (once); the done-callbacks are scheduled."""
        self._finish("done")
        self._exception = exception
        self._schedule_callbacks()

    def cancel(self) -> bool:
        """Cancel it if still pending (True), else do nothing (False)."""
        if self._state != "pending":
            return False
        self._state = "cancelled"
        self._schedule_callbacks()
        return True

    def add_done_callback(self, callback: Callable[[Future[T]], object]) -> None:
        """`callback(future)` runs in the loop once the future is done (soon, if it is)."""
        if self.done():
            self._scheduler.call_soon(callback, self)
        else:
            self._callbacks.append(callback)

    def __await__(self) -> Generator[Any, None, T]:
        """`await future` from asyncio code (see the module docstring)."""
        if not self.done():
            import asyncio

            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            awaiting_thread = threading.get_ident()

            def wake(_: Future[T]) -> None:
                if threading.get_ident() == awaiting_thread:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    loop.call_soon_threadsafe(_wake_unless_done, waiter)

            self.add_done_callback(wake)
            try:
                yield from waiter
            except asyncio.CancelledError:
                self.cancel()
                raise
        if self._state == "cancelled":
            import asyncio

            raise asyncio.CancelledError("the muxio future was cancelled")
        return self.result()

    def _finish(self, state: str) -> None:
        if self._state != "pending":
            raise InvalidStateError(f"the future is already {self._state}")
        self._state = state

    def _schedule_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._scheduler.call_soon(callback, self)

    def __repr__(self) -> str:
        return f"<Future {self._state}>"


def _wake_unless_done(waiter: Any) -> None:
    if not waiter.done():
        waiter.set_result(None)
