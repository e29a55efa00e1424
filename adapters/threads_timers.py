"""Timers for handlers hosted on threads: `ThreadScheduler`, the `muxio.protocols.Scheduler`
of `adapters.threads_host`.

One timer thread runs every `call_soon`/`call_later` callback, each under the callback
lock that the arming thread held (see `callback_lock`), so a timer never runs at the same
time as another callback of the same connection (or, with the server-wide lock, of the
same server). Cancelled timers are deleted lazily; the heap is rebuilt when most of a large
heap is dead, as asyncio does.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Any

ErrorHandler = Callable[[dict[str, Any]], None]


class ThreadHostError(RuntimeError):
    """The thread host could not stop cleanly (a thread did not finish in time)."""


_current = threading.local()
"""`_current.lock`: the callback lock of the connection this thread serves (reader and
sender threads set it once), or of the timer running now (the timer thread)."""


def set_callback_lock(lock: threading.RLock | None) -> None:
    """Declare `lock` as the callback lock of the calling thread."""
    _current.lock = lock


def callback_lock() -> threading.RLock | None:
    """The callback lock of the calling thread (None outside the host's threads)."""
    lock: threading.RLock | None = getattr(_current, "lock", None)
    return lock


class TimerHandle:
    """A pending `call_later`; `cancel()` from any thread (checked under the callback lock
    just before the call, so a cancel from a callback always wins)."""

    __slots__ = ("_scheduler", "args", "callback", "cancelled", "lock", "when")

    def __init__(self, scheduler: ThreadScheduler, when: float,
                 callback: Callable[..., object], args: tuple[object, ...],
                 lock: threading.RLock) -> None:
        self._scheduler = scheduler
        self.when = when
        self.callback = callback
        self.args = args
        self.lock = lock
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._scheduler._cancelled()

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when


class ThreadScheduler:
    """`muxio.protocols.Scheduler` for handlers hosted on threads: one timer thread runs
    every `call_soon`/`call_later` callback, each under the callback lock that was held
    where it was armed (the server lock when armed outside any callback)."""

    def __init__(self, default_lock: threading.RLock, on_error: ErrorHandler) -> None:
        self._default_lock = default_lock
        self._on_error = on_error
        self._heap: list[TimerHandle] = []
        self._cancelled_count = 0
        self._condition = threading.Condition(threading.Lock())
        self._stopping = False
        self._thread: threading.Thread | None = None

    def time(self) -> float:
        return time.monotonic()

    def call_soon(self, callback: Callable[..., object], *args: object) -> TimerHandle:
        return self.call_later(0.0, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object],
                   *args: object) -> TimerHandle:
        lock = callback_lock() or self._default_lock
        handle = TimerHandle(self, time.monotonic() + max(0.0, delay), callback, args, lock)
        with self._condition:
            heapq.heappush(self._heap, handle)
            if self._heap[0] is handle:
                self._condition.notify()
        return handle

    def pending(self) -> int:
        """Timers armed and not cancelled (tests, statistics)."""
        with self._condition:
            return len(self._heap) - self._cancelled_count

    def _cancelled(self) -> None:
        with self._condition:
            self._cancelled_count += 1
            # Lazily deleted; rebuilt when most of a large heap is dead (as asyncio does).
            if len(self._heap) > 100 and self._cancelled_count * 2 > len(self._heap):
                self._heap = [handle for handle in self._heap if not handle.cancelled]
                heapq.heapify(self._heap)
                self._cancelled_count = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="threads-host-timers",
                                        daemon=True)
        self._thread.start()

    def _due(self) -> list[TimerHandle] | None:
        """Wait for the timers that are due (None once stopping)."""
        with self._condition:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                heap = self._heap
                while heap and heap[0].cancelled:
                    heapq.heappop(heap)
                    self._cancelled_count -= 1
                if heap and heap[0].when <= now:
                    due = []
                    while heap and heap[0].when <= now:
                        handle = heapq.heappop(heap)
                        if handle.cancelled:
                            self._cancelled_count -= 1
                        else:
                            due.append(handle)
                    return due
                self._condition.wait(heap[0].when - now if heap else None)

    def _run(self) -> None:
        while (due := self._due()) is not None:
            for handle in due:
                with handle.lock:
                    if handle.cancelled:
                        continue
                    handle.cancelled = True  # fired: a late cancel() is a no-op
                    set_callback_lock(handle.lock)  # what this callback arms runs under it
                    try:
                        handle.callback(*handle.args)
                    except Exception as exc:
                        self._on_error({"message": f"timer callback {handle.callback!r} "
                                                   f"raised", "exception": exc})
                    finally:
                        set_callback_lock(None)

    def close(self, timeout: float) -> None:
        with self._condition:
            self._stopping = True
            self._heap.clear()
            self._cancelled_count = 0
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise ThreadHostError(f"the timer thread did not stop within {timeout} s "
                                      f"(a timer callback is blocking)")
