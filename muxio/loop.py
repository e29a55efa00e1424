"""Floor 2: the event loop. A poller, a timer heap, a ready queue, a wakeup fd, signals.

Theory of operation
-------------------
One iteration (`run_once`):

1. Decide how long to wait: 0 if callbacks are ready, until the earliest timer if any,
   else forever. A thread calling `call_soon_threadsafe` (or `stop`) writes to the
   wakeup fd, which is registered like any other reader, so blocking forever is safe.
2. `poller.poll(timeout)`; for each (fd, events) call the fd's reader and/or writer
   directly. ERROR and HUP go to both, so whoever owns the fd finds out from its next
   recv/send. Readiness may be spurious: readers must tolerate EAGAIN.
3. Move due timers to the ready queue; run the callbacks that were ready *before* this
   step (callbacks scheduled now run in the next iteration, so a callback that
   reschedules itself cannot starve I/O).
4. Run the `call_before_poll` callbacks: transports send the writes they queued during
   this iteration, every connection's bytes in one pass, so the peers are woken in one
   burst rather than between our reads.

With an edge-triggered poller (`loop.edge_triggered`), a reader must read until EAGAIN:
the fd is not reported again until new data arrives.

An exception escaping a callback goes to the exception handler (default: logged) and
the loop goes on. No loop is installed globally: create one and pass it around.
The clock is injectable (`muxio.testing.FakeClock`) so tests drive timers without
waiting.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from types import FrameType, TracebackType
from typing import Any, Protocol, TypeVar

from muxio.config import BackendChoice, resolve_backend
from muxio.errors import (
    BadFdError,
    LoopClosedError,
    LoopError,
    LoopRunningError,
    LoopTimeoutError,
)
from muxio.futures import Future
from muxio.pollers.base import (
    ERROR,
    HUP,
    RDHUP,
    READ,
    WRITE,
    FileLike,
    Poller,
    PollerStatistics,
    fd_of,
)
from muxio.pollers.registry import BackendSpec, Features, default_registry

log = logging.getLogger("muxio.loop")

T = TypeVar("T")
Callback = Callable[..., object]
ExceptionHandler = Callable[["Loop", dict[str, Any]], None]

_READ_LIKE = READ | ERROR | HUP | RDHUP
_WRITE_LIKE = WRITE | ERROR | HUP
_MIN_CANCELLED_TIMERS_TO_PURGE = 100


class Clock(Protocol):
    """Where the loop gets its time; tests substitute `muxio.testing.FakeClock`."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def before_wait(self, timeout: float | None) -> float | None:
        """Called before the poller blocks; returns the timeout to really wait.

        A real clock returns `timeout`; a fake clock may jump ahead and return 0.
        """
        ...


class MonotonicClock:
    """The real clock: `time.monotonic`."""

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def before_wait(timeout: float | None) -> float | None:
        return timeout


def _cancelled(*args: object) -> None:
    """What a cancelled handle holds instead of its callback."""


class Handle:
    """A scheduled callback; `cancel()` prevents it from running."""

    __slots__ = ("_callback", "_args", "_cancelled")

    def __init__(self, callback: Callback, args: tuple[object, ...]) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        self._drop_references()

    def _drop_references(self) -> None:
        # A cancelled timer may wait in the heap until it is due or purged: it must not
        # keep its callback's objects (a closed connection, its buffers) alive meanwhile.
        self._callback = _cancelled
        self._args = ()

    def cancelled(self) -> bool:
        return self._cancelled

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<{type(self).__name__} {getattr(self._callback, '__qualname__', '?')}{state}>"


class TimerHandle(Handle):
    """A callback due at `when` (loop time); cancelled timers are purged from the heap."""

    __slots__ = ("when", "_loop")

    def __init__(self, when: float, callback: Callback, args: tuple[object, ...],
                 loop: Loop) -> None:
        super().__init__(callback, args)
        self.when = when
        self._loop: Loop | None = loop

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self._drop_references()
            loop = self._loop
            if loop is not None:
                loop._timer_cancelled()


class _ThreadWaker:
    """An fd another thread writes to so that a blocked poll returns (eventfd or pipe).

    `wake` (any thread) and `close` (the loop's thread) exclude each other: otherwise a
    wake could write to the fd number after close freed it, into whatever file the
    process opened next under that number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event_fd = -1
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        if hasattr(os, "eventfd"):
            self._event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.fd = self._event_fd
        else:  # pragma: no cover - non-Linux
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._sockets = (reader, writer)
            self.fd = reader.fileno()

    def wake(self) -> None:
        with self._lock:
            try:
                if self._event_fd >= 0:
                    os.eventfd_write(self._event_fd, 1)
                elif self._sockets is not None:
                    self._sockets[1].send(b"\0")
            except OSError:
                pass  # full: a wakeup is already pending

    def drain(self) -> None:
        try:
            if self._event_fd >= 0:
                os.eventfd_read(self._event_fd)
            elif self._sockets is not None:
                while self._sockets[0].recv(4096):
                    pass
        except OSError:
            pass  # EAGAIN: nothing (more) to drain

    def close(self) -> None:
        with self._lock:
            if self._event_fd >= 0:
                os.close(self._event_fd)
                self._event_fd = -1
            if self._sockets is not None:
                for sock in self._sockets:
                    sock.close()
                self._sockets = None


class _SignalPipe:
    """Receives signal numbers written by Python's C-level handler (set_wakeup_fd).

    There is one wakeup fd per process, so one loop at a time may own it: taking it from
    another loop (muxio's or asyncio's) would silently deprive that loop of its signals.
    """

    def __init__(self, owner: Loop) -> None:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        previous = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        if previous != -1:
            signal.set_wakeup_fd(previous)
            self.reader.close()
            self.writer.close()
            holder = _signal_owner.get("loop")
            who = f"{holder!r}" if holder is not None else f"another event loop (fd {previous})"
            raise LoopError(
                f"{who} already receives this process's signals (signal.set_wakeup_fd is "
                f"per process); remove its signal handlers or close it first")
        _signal_owner["loop"] = owner
        self.previous_wakeup_fd = previous

    def read_signals(self) -> bytes:
        chunks = []
        while True:
            try:
                data = self.reader.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def close(self) -> None:
        signal.set_wakeup_fd(self.previous_wakeup_fd)
        _signal_owner.pop("loop", None)
        self.reader.close()
        self.writer.close()


_signal_owner: dict[str, Loop] = {}
"""The loop whose `_SignalPipe` holds the process's wakeup fd, for error messages."""


def _callback_name(callback: Callable[..., object] | None) -> str:
    if isinstance(callback, partial):
        callback = callback.func
    return "none" if callback is None else getattr(callback, "__qualname__", repr(callback))


def _ignore_signal_in_python(signum: int, frame: FrameType | None) -> None:
    """Python-level handler: the real work happens in the loop via the wakeup fd."""


class Loop:
    """An event loop over one poller. Create it explicitly; nothing is global.

    `backend` follows the config precedence (API argument first); `poller` overrides it
    with a ready-made Poller instance (e.g. `SelectorsPoller(MySelector())`).
    """

    def __init__(self, backend: str | None = None, *, poller: Poller | None = None,
                 clock: Clock | None = None, cli_backend: str | None = None,
                 features: Features | None = None) -> None:
        self.backend_choice: BackendChoice[BackendSpec] | None = None
        if poller is None:
            self.backend_choice = resolve_backend(backend, cli=cli_backend, features=features,
                                                  registry=default_registry())
            poller = self.backend_choice.spec.factory()
        self._poller = poller
        poller.check_closed_fds = False  # the loop drops `closed_fds` after every poll
        self._closed_fds = poller.closed_fds
        self.edge_triggered = poller.capabilities.edge_triggered
        self._clock: Clock = clock or MonotonicClock()
        self.time: Callable[[], float] = self._clock.monotonic
        # fd -> a callable taking no arguments (extra arguments are bound with partial),
        # so that dispatching an event is one dict lookup and one plain call.
        self._readers: dict[int, Callable[[], object]] = {}
        self._writers: dict[int, Callable[[], object]] = {}
        self._interest: dict[int, int] = {}
        self._stream_readers: set[int] = set()
        """Edge-triggered only: fds read by `add_stream_reader`."""
        self._write_armed: set[int] = set()
        """Of those, the fds armed for WRITE by a first `add_writer`; they stay armed while
        the reader is there."""
        self._ready: deque[Handle] = deque()
        self._before_poll: list[Callable[[], object]] = []
        self.call_before_poll: Callable[[Callable[[], object]], None] = self._before_poll.append
        """`call_before_poll(callback)`: run `callback()` once at the end of this iteration,
        after the ready callbacks, right before the loop polls again (a callback added
        while these run still runs before the poll). Transports queue their writes here
        so that every connection's bytes of one iteration go out in one pass (see tcp.py).
        It is the list's own `append`: the write path pays no Python call for it."""
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = itertools.count()
        self._cancelled_timers = 0
        self._running = False
        self._stopping = False
        self._closed = False
        self._thread_id: int | None = None
        self._exception_handler: ExceptionHandler | None = None
        self._signal_pipe: _SignalPipe | None = None
        self._signal_handlers: dict[int, Handle] = {}
        self._previous_signal_handlers: dict[int, Any] = {}
        self.current_events = 0
        """Event flags of the fd whose reader/writer the loop is calling for a poll result
        (edge-triggered readers use HUP/RDHUP to know whether the peer's EOF is queued); 0 at
        any other time, e.g. in call_soon callbacks, so a read continued from the ready
        queue never sees another fd's flags."""
        self._waker = _ThreadWaker()
        self.add_reader(self._waker.fd, self._waker.drain)

    # -- properties ----------------------------------------------------------------------

    @property
    def poller(self) -> Poller:
        return self._poller

    @property
    def backend(self) -> str:
        """Name of the poller backend in use (e.g. 'epoll')."""
        return self._poller.name

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def statistics(self) -> PollerStatistics:
        return self._poller.statistics()

    # -- scheduling ----------------------------------------------------------------------

    def call_soon(self, callback: Callback, *args: object) -> Handle:
        """Run `callback(*args)` in the next iteration, in FIFO order."""
        if self._closed:
            raise LoopClosedError("the loop is closed; create a new one")
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callback, *args: object) -> Handle:
        """`call_soon` from any thread; wakes the loop if it is blocked in poll."""
        handle = self.call_soon(callback, *args)
        self._waker.wake()
        return handle

    def call_later(self, delay: float, callback: Callback, *args: object) -> TimerHandle:
        """Run `callback(*args)` after `delay` seconds (loop clock)."""
        return self.call_at(self.time() + delay, callback, *args)

    def call_at(self, when: float, callback: Callback, *args: object) -> TimerHandle:
        """Run `callback(*args)` at loop time `when` (see `loop.time()`)."""
        if self._closed:
            raise LoopClosedError("the loop is closed; create a new one")
        timer = TimerHandle(when, callback, args, self)
        heapq.heappush(self._timers, (when, next(self._timer_seq), timer))
        return timer

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1
        if (self._cancelled_timers > _MIN_CANCELLED_TIMERS_TO_PURGE
                and self._cancelled_timers * 2 > len(self._timers)):
            # In place: `_run_once` may hold this list in a local while a callback that
            # it runs cancels timers; a new list would leave it popping a stale copy.
            self._timers[:] = [entry for entry in self._timers if not entry[2]._cancelled]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    def pending_timers(self) -> int:
        """Timers scheduled and not cancelled (what a leak check looks at)."""
        return sum(1 for entry in self._timers if not entry[2]._cancelled)

    # -- fds -----------------------------------------------------------------------------

    def add_reader(self, fileobj: FileLike, callback: Callback, *args: object) -> None:
        """Call `callback(*args)` whenever the fd is readable (replaces an earlier reader)."""
        fd = self._fd_for_update(fileobj)
        replacing = fd in self._readers
        self._readers[fd] = partial(callback, *args) if args else callback
        self._stream_readers.discard(fd)
        self._write_armed.discard(fd)
        self._update_interest(fd, adding=True, rearm=replacing)

    def add_stream_reader(self, fileobj: FileLike, callback: Callback, *args: object) -> None:
        """`add_reader` for a stream whose owner adds and removes a writer as its send
        buffer fills and drains (a TCP transport). On an edge-triggered poller the first
        `add_writer` arms the fd for READ|WRITE, and it stays so while the reader is there:
        from then on `add_writer`/`remove_writer` only change which callback an EPOLLOUT
        edge reaches, with no `epoll_ctl` (an edge reports each readiness change once, so
        the armed WRITE wakes nobody while the socket stays writable; an EPOLLOUT that
        comes with no writer costs one dict lookup). A connection whose buffer never fills
        (most requests and responses) is never armed for WRITE at all, so its events carry
        no OUT to look up. On a level-triggered poller this is `add_reader` (WRITE armed
        there would be reported on every poll)."""
        fd = self._fd_for_update(fileobj)
        replacing = fd in self._readers
        self._readers[fd] = partial(callback, *args) if args else callback
        if self.edge_triggered:
            self._stream_readers.add(fd)
        else:
            self._stream_readers.discard(fd)
        self._update_interest(fd, adding=True, rearm=replacing)

    def remove_reader(self, fileobj: FileLike) -> bool:
        fd = fd_of(fileobj)
        if self._readers.pop(fd, None) is None:
            return False
        self._stream_readers.discard(fd)
        self._write_armed.discard(fd)
        if not self._closed:
            self._update_interest(fd)
        return True

    def add_writer(self, fileobj: FileLike, callback: Callback, *args: object) -> None:
        """Call `callback(*args)` whenever the fd is writable (replaces an earlier writer)."""
        fd = self._fd_for_update(fileobj)
        replacing = fd in self._writers
        self._writers[fd] = partial(callback, *args) if args else callback
        if fd in self._stream_readers:
            self._write_armed.add(fd)  # armed from now on: see add_stream_reader
        self._update_interest(fd, adding=True, rearm=replacing)

    def remove_writer(self, fileobj: FileLike) -> bool:
        fd = fd_of(fileobj)
        if self._writers.pop(fd, None) is None:
            return False
        if not self._closed:
            self._update_interest(fd)
        return True

    def _fd_for_update(self, fileobj: FileLike) -> int:
        if self._closed:
            raise LoopClosedError("the loop is closed; create a new one")
        return fd_of(fileobj)

    def _update_interest(self, fd: int, *, adding: bool = False, rearm: bool = False) -> None:
        """Tell the poller what fd's callbacks want. `rearm`: a callback was replaced, and
        the file behind the number may be a new one (the old closed without
        remove_reader, its number reused): the poller is told again even if the events
        did not change, or epoll, which dropped the closed file, would never hear of the
        new one."""
        events = ((READ if fd in self._readers else 0)
                  | (WRITE if fd in self._writers or fd in self._write_armed else 0))
        old = self._interest.get(fd, 0)
        if events == old and not (rearm and events):
            return
        try:
            if not old:
                self._poller.register(fd, events)
            elif events:
                self._poller.modify(fd, events)
            else:
                self._poller.unregister(fd)
        except BadFdError:
            # The fd is closed: whatever was registered on it is gone. Asking to watch it
            # is the caller's error; asking to stop watching it is already done.
            self._forget_fd(fd)
            if adding:
                raise
            return
        except BaseException:
            # Keep our tables consistent with the poller's when the OS refuses.
            if not old:
                self._readers.pop(fd, None)
                self._writers.pop(fd, None)
                self._stream_readers.discard(fd)
                self._write_armed.discard(fd)
            raise
        if events:
            self._interest[fd] = events
        else:
            del self._interest[fd]

    def _forget_fd(self, fd: int) -> tuple[Callable[[], object] | None,
                                           Callable[[], object] | None]:
        """Drop every trace of a closed fd; returns the (reader, writer) it had."""
        self._poller.discard(fd)
        self._interest.pop(fd, None)
        self._stream_readers.discard(fd)
        self._write_armed.discard(fd)
        return self._readers.pop(fd, None), self._writers.pop(fd, None)

    def _drop_closed_fds(self) -> None:
        """The poller found registered fds that were closed behind our back (poll's
        POLLNVAL, select's EBADF): drop them, as epoll does by itself, so that no backend
        calls their callbacks again or spins on them."""
        closed = self._closed_fds
        for fd in closed:
            reader, writer = self._forget_fd(fd)
            log.warning("fd %d was closed while the loop watched it (reader %s, writer %s); "
                        "its callbacks are dropped. Call remove_reader/remove_writer before "
                        "closing a file.", fd, _callback_name(reader), _callback_name(writer))
        closed.clear()

    # -- signals -------------------------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callback, *args: object) -> None:
        """Run `callback(*args)` in the loop when the process receives `signum`.

        Only from the main thread (a rule of Python's `signal` module).
        """
        if self._closed:
            raise LoopClosedError("the loop is closed; create a new one")
        if threading.current_thread() is not threading.main_thread():
            raise LoopError("signal handlers can only be added from the main thread")
        if self._signal_pipe is None:
            self._signal_pipe = _SignalPipe(self)
            self.add_reader(self._signal_pipe.reader, self._dispatch_signals)
        if signum not in self._previous_signal_handlers:
            self._previous_signal_handlers[signum] = signal.getsignal(signum)
        signal.signal(signum, _ignore_signal_in_python)
        signal.siginterrupt(signum, False)
        self._signal_handlers[signum] = Handle(callback, args)

    def remove_signal_handler(self, signum: int) -> bool:
        """Restore the handler that was there before; False if none was set by us."""
        if self._signal_handlers.pop(signum, None) is None:
            return False
        previous = self._previous_signal_handlers.pop(signum, signal.SIG_DFL)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        if not self._signal_handlers and self._signal_pipe is not None:
            self.remove_reader(self._signal_pipe.reader)
            self._signal_pipe.close()
            self._signal_pipe = None
        return True

    def _dispatch_signals(self) -> None:
        assert self._signal_pipe is not None
        for signum in self._signal_pipe.read_signals():
            handle = self._signal_handlers.get(signum)
            if handle is not None and not handle._cancelled:
                self._ready.append(handle)

    # -- running -------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run until `stop()` is called (from a callback, a signal handler or a thread).

        A `stop()` made before this call is honoured after one iteration (as asyncio
        does), so a stop requested early is never lost."""
        self._start_running()
        try:
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stop_running(honoured_stop=True)

    def run_until(self, condition: Callable[[], bool], timeout: float | None = None) -> None:
        """Run until `condition()` is true; raise LoopTimeoutError after `timeout` seconds."""
        self._start_running()
        deadline = None if timeout is None else self.time() + timeout
        expired = False

        def on_deadline() -> None:
            nonlocal expired
            expired = True

        timer = None if deadline is None else self.call_at(deadline, on_deadline)
        try:
            while not condition():
                if expired:
                    raise LoopTimeoutError(
                        f"condition {getattr(condition, '__qualname__', condition)!r} "
                        f"still false after {timeout} s")
                if self._stopping:
                    break
                self._run_once()
        finally:
            if timer is not None:
                timer.cancel()
            self._stop_running(honoured_stop=True)

    def run_until_complete(self, future: Future[T], timeout: float | None = None) -> T:
        """Run until `future` is done; return its result (or raise its exception)."""
        self.run_until(future.done, timeout)
        return future.result()

    def run_once(self, timeout: float | None = 0) -> None:
        """One iteration, waiting at most `timeout` seconds for I/O (tests, embedding)."""
        self._start_running()
        try:
            self._run_once(timeout)
        finally:
            self._stop_running()

    def flush(self) -> None:
        """Run the `call_before_poll` callbacks now: transports send what they queued.

        For a host that runs callbacks of its own between `run_once` calls (muxio.aio
        runs asyncio's ready callbacks there): their writes leave before it stops, as
        they would have before the next poll."""
        if self._before_poll:
            self._run_before_poll()

    def stop(self) -> None:
        """Stop `run_forever` (or `run_until`) after the current iteration; if none is
        running, the next one stops after its first iteration. Safe from any thread."""
        self._stopping = True
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            self._waker.wake()

    def _start_running(self) -> None:
        if self._closed:
            raise LoopClosedError("the loop is closed; create a new one")
        if self._running:
            raise LoopRunningError("the loop is already running; run calls do not nest")
        self._running = True
        self._thread_id = threading.get_ident()

    def _stop_running(self, *, honoured_stop: bool = False) -> None:
        self._running = False
        if honoured_stop:
            self._stopping = False  # consumed; run_once leaves a pending stop alone
        self._thread_id = None

    def _run_once(self, max_timeout: float | None = None) -> None:
        if self._before_poll:
            self._run_before_poll()  # e.g. writes made while the loop was not running
        ready = self._ready
        timers = self._timers
        timeout: float | None
        if ready or self._stopping:
            timeout = 0
        else:
            while timers and timers[0][2]._cancelled:
                heapq.heappop(timers)
                self._cancelled_timers -= 1
            timeout = max(0.0, timers[0][0] - self.time()) if timers else None
            if max_timeout is not None and (timeout is None or timeout > max_timeout):
                timeout = max_timeout
            timeout = self._clock.before_wait(timeout)

        events = self._poller.poll(timeout)
        if self._closed_fds:
            self._drop_closed_fds()
        if events:
            readers = self._readers
            writers = self._writers
            for fd, mask in events:
                self.current_events = mask
                if mask & _READ_LIKE:
                    reader = readers.get(fd)
                    if reader is not None:
                        try:
                            reader()
                        except Exception as exc:
                            self._callback_failed(exc, reader)
                if mask & _WRITE_LIKE:
                    writer = writers.get(fd)
                    if writer is not None:
                        try:
                            writer()
                        except Exception as exc:
                            self._callback_failed(exc, writer)
            self.current_events = 0

        if timers:
            now = self.time()
            while timers and timers[0][0] <= now:
                timer = heapq.heappop(timers)[2]
                if timer._cancelled:
                    self._cancelled_timers -= 1
                else:
                    timer._loop = None  # fired: a late cancel() must not count it again
                    ready.append(timer)

        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                handle._callback(*handle._args)
            except Exception as exc:
                self._callback_failed(exc, handle._callback)

        if self._before_poll:
            self._run_before_poll()

    def _run_before_poll(self) -> None:
        before_poll = self._before_poll
        for callback in before_poll:  # a list iterator also sees what is added meanwhile
            try:
                callback()
            except Exception as exc:
                self._callback_failed(exc, callback)
        before_poll.clear()

    # -- errors --------------------------------------------------------------------------

    def set_exception_handler(self, handler: ExceptionHandler | None) -> None:
        """`handler(loop, context)` receives every exception escaping a callback."""
        self._exception_handler = handler

    def get_exception_handler(self) -> ExceptionHandler | None:
        return self._exception_handler

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exception_handler is not None:
            try:
                self._exception_handler(self, context)
                return
            except Exception:
                log.exception("exception in the loop's exception handler")
        exc = context.get("exception")
        log.error("%s", context.get("message", "unhandled exception in a callback"),
                  exc_info=exc if isinstance(exc, BaseException) else None)

    def _callback_failed(self, exc: Exception, callback: Callback) -> None:
        self.call_exception_handler({
            "message": f"exception in callback {_callback_name(callback)}",
            "exception": exc,
            "callback": callback.func if isinstance(callback, partial) else callback})

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the poller and the loop's own fds. Idempotent; not while running."""
        if self._running:
            raise LoopRunningError("stop the loop before closing it")
        if self._closed:
            return
        for signum in list(self._signal_handlers):
            self.remove_signal_handler(signum)
        self._closed = True
        self._ready.clear()
        self._before_poll.clear()
        for entry in self._timers:
            entry[2]._loop = None
        self._timers.clear()
        self._readers.clear()
        self._writers.clear()
        self._interest.clear()
        self._stream_readers.clear()
        self._write_armed.clear()
        self._poller.close()
        self._waker.close()

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return f"<Loop backend={self.backend!r} {state}>"

    def create_future(self) -> Future[Any]:
        return Future(self)


