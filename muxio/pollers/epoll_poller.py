"""epoll(7), level- and edge-triggered: O(1) per call in the number of idle fds. Linux only.

Facts about epoll that shape this file:
- epoll watches the open file description, not the fd number: an fd closed while
  registered disappears from the set by itself (unless dup'ed), so unregister of such
  an fd fails with EBADF/ENOENT and the base class ignores that.
- epoll refuses regular files and directories with EPERM (they are always ready); the
  error says so and suggests poll/select, which accept them.
- Edge-triggered (EPOLLET) reports a readiness *change* once: whoever handles the event
  must read/write until EAGAIN or it will not hear about that fd again. The loop and
  transports honour that when `capabilities.edge_triggered` is true.
- EPOLLERR and EPOLLHUP are always reported, whatever the interest mask.
- EPOLL_CTL_MOD re-arms the fd: current readiness is reported again, even in ET mode.
- The result mask of an edge is the fd's whole readiness filtered by the interest mask:
  an fd armed for IN|OUT reports OUT with every data arrival while it is writable. The
  interest mask, not the edge, decides what a caller is told.
- Results come back in Linux's flag values, which are muxio's (EPOLLRDHUP is RDHUP), so
  both modes hand epoll's own list to the loop with no per-event work.
"""

from __future__ import annotations

import select

from muxio.pollers.base import RDHUP, Capabilities, Poller
from muxio.pollers.translate import EventTranslator

_MAX_EVENTS = 1024
"""Events taken per epoll_wait; more ready fds are returned by the next call."""


_TRANSLATOR = EventTranslator(read=select.EPOLLIN, write=select.EPOLLOUT,
                              error=select.EPOLLERR, hup=select.EPOLLHUP,
                              rdhup=select.EPOLLRDHUP, extra_read=select.EPOLLPRI)
_NEVER_REPORTED = select.EPOLLET
"""Interest flags that never appear in a result (so they do not spoil the identity)."""


class EpollPoller(Poller):
    """Level-triggered epoll: an fd keeps being reported while it stays ready."""

    name = "epoll"
    capabilities = Capabilities(edge_triggered=False, constant_time=True, max_fd=None,
                                reports_hup=True, checks_fd_itself=True)
    _extra_flags = 0

    def __init__(self) -> None:
        super().__init__()
        self._epoll = select.epoll()
        self._translator = _TRANSLATOR
        reported = self._extra_flags & ~_NEVER_REPORTED
        self._identity = _TRANSLATOR.identity and reported & ~RDHUP == 0

    def _os_register(self, fd: int, events: int) -> None:
        self._epoll.register(fd, self._translator.to_os(events) | self._extra_flags)

    def _os_modify(self, fd: int, events: int, old_events: int) -> None:
        self._epoll.modify(fd, self._translator.to_os(events) | self._extra_flags)

    def _os_unregister(self, fd: int, old_events: int) -> None:
        self._epoll.unregister(fd)

    def _os_poll(self, timeout: float | None) -> list[tuple[int, int]]:
        # epoll.poll takes seconds and rounds up to the ms itself; -1 blocks.
        raw = self._epoll.poll(-1 if timeout is None else max(timeout, 0.0),
                               min(max(len(self._fds), 1), _MAX_EVENTS))
        if self._identity:
            # Only EPOLLIN/OUT/ERR/HUP (and RDHUP on ET) can be reported, and they equal
            # muxio's flags: epoll's own list is the result.
            return raw
        return self._translator.results(raw)

    def _os_close(self) -> None:
        self._epoll.close()

    def fileno(self) -> int:
        return self._epoll.fileno()


class EdgeTriggeredEpollPoller(EpollPoller):
    """Edge-triggered epoll (EPOLLET): one report per readiness change; drain to EAGAIN."""

    name = "epoll-et"
    capabilities = Capabilities(edge_triggered=True, constant_time=True, max_fd=None,
                                reports_hup=True, checks_fd_itself=True)
    # EPOLLRDHUP (reported as RDHUP) tells a reader that the peer's FIN is queued behind
    # the data it just read, so a short read needs no extra recv -> EAGAIN to be sure (see
    # the transports).
    _extra_flags = select.EPOLLET | select.EPOLLRDHUP
