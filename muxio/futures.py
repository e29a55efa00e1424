"""A small, typed Future: a result that arrives later, with done-callbacks.

Loop-agnostic (callbacks are scheduled through any object with `call_soon`), so the
resolver and other clients can hand results to callers without depending on asyncio.
`Loop.run_until_complete(future)` runs the loop until it is done. Futures are also
awaitable from asyncio code via `asyncio.wrap_future`-like glue in the adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

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
