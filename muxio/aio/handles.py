"""asyncio's add_reader/add_writer callbacks on a muxio poller, level-triggered on every
backend, including the edge-triggered ones.

Theory of operation
-------------------
asyncio code registers a callback per fd and direction (`loop.add_reader(fd, cb)`), and
expects *level-triggered* readiness: the callback runs once per loop iteration for as
long as the fd stays readable. Code written for that contract (asyncio's own pipe
transports, `sock_recv`, server accept loops, third-party libraries) reads *once* per
callback, not until EAGAIN.

The muxio loop reports the fd and calls `IoHandle.on_event`, which queues the handle on
asyncio's ready queue; the callback runs with the rest of the iteration's ready
callbacks, in its own `contextvars` context, its exceptions going to the loop's
exception handler: exactly what asyncio's selector loop does.

Level-triggered pollers (select, poll, epoll, selectors) report the fd again on the
next poll if the callback left data behind; nothing more is needed.

Edge-triggered pollers (epoll-et, and plug-ins declaring `edge_triggered`) report a
change once. A callback that reads one chunk of a larger backlog would never hear about
that fd again: readiness would be lost. `LevelTriggeredHandle` restores the level
contract: after its callback returns, it asks the kernel whether the fd is *still*
ready (one `poll(2)` on that single fd with a zero timeout, which is level-triggered by
nature). If it is, the handle queues itself for the next iteration, exactly when a
level-triggered poller would have reported the fd again. A flag keeps it queued at most
once per iteration, even if the edge-triggered poller also reports a new edge. Cost: one
zero-timeout syscall per callback run, on edge-triggered backends only, and only for
asyncio-level fd callbacks: muxio's own transports (TCP, UDP, KCP) read until EAGAIN
and pay nothing extra.

A handle that was cancelled (the caller cancelled what add_reader returned) is dropped
from the poller at its next event, as asyncio's selector loop does.
"""

from __future__ import annotations

import select
from asyncio import events
from collections import deque
from collections.abc import Callable
from typing import Any

READABLE = select.POLLIN | select.POLLPRI
WRITABLE = select.POLLOUT


class ReadinessProbe:
    """Asks the kernel, without waiting, whether one fd is ready (level-triggered)."""

    __slots__ = ("_poll",)

    def __init__(self) -> None:
        self._poll = select.poll()

    def ready(self, fd: int, mask: int) -> bool:
        """True if `fd` is ready for `mask` (or has an error or hang-up pending, which a
        level-triggered poller reports too)."""
        poll = self._poll
        try:
            poll.register(fd, mask)
        except (ValueError, OSError):
            return False  # closed meanwhile: nothing left to report
        try:
            events_ = poll.poll(0)
        finally:
            poll.unregister(fd)
        return bool(events_) and not events_[0][1] & select.POLLNVAL


class IoHandle(events.Handle):
    """The handle of one fd callback; `on_event` is what the muxio loop calls."""

    __slots__ = ("_fd", "_writer", "_ready_queue", "_drop")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...],
                 loop: events.AbstractEventLoop, *, fd: int, writer: bool,
                 ready_queue: deque[events.Handle],
                 drop: Callable[[int, bool, IoHandle], None]) -> None:
        super().__init__(callback, args, loop, None)
        self._fd = fd
        self._writer = writer
        self._ready_queue = ready_queue
        self._drop = drop

    def on_event(self) -> None:
        """The poller reported the fd: run the callback in this iteration's ready pass."""
        if self._cancelled:
            self._drop(self._fd, self._writer, self)
        else:
            self._ready_queue.append(self)


class LevelTriggeredHandle(IoHandle):
    """An IoHandle for edge-triggered pollers: re-queued while the fd stays ready."""

    __slots__ = ("_queued", "_probe")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...],
                 loop: events.AbstractEventLoop, *, fd: int, writer: bool,
                 ready_queue: deque[events.Handle],
                 drop: Callable[[int, bool, IoHandle], None], probe: ReadinessProbe) -> None:
        super().__init__(callback, args, loop, fd=fd, writer=writer, ready_queue=ready_queue,
                         drop=drop)
        self._queued = False
        self._probe = probe

    def on_event(self) -> None:
        if self._cancelled:
            self._drop(self._fd, self._writer, self)
        elif not self._queued:
            self._queued = True
            self._ready_queue.append(self)

    def _run(self) -> None:
        self._queued = False
        super()._run()
        if (not self._cancelled and not self._queued
                and self._probe.ready(self._fd, WRITABLE if self._writer else READABLE)):
            # Still ready: a level-triggered poller would report it on the next poll.
            self._queued = True
            self._ready_queue.append(self)
