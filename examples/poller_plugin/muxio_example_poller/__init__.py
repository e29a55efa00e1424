"""An example muxio poller plug-in: poll(2), from scratch, as a third party writes one.

    pip install examples/poller_plugin       # beside muxio
    muxio backends                           # lists example-poll, available
    muxio serve echo --backend example-poll
    python -m pytest ...                     # tests marked muxio_matrix now run on it too

A backend is a `muxio.pollers.Poller` subclass: a `name`, its `capabilities` as data, and
the five `_os_*` hooks. The base class does everything they have in common (the fd
bookkeeping, closed-fd and double-registration errors, statistics), so a backend is only
the translation onto its OS facility. muxio's event flags (READ, WRITE, ERROR, HUP) are
translated explicitly here, as a backend for an OS whose values differ would have to.
"""

from __future__ import annotations

import select

from muxio.pollers.base import ERROR, HUP, READ, WRITE, Capabilities, Poller, timeout_to_ms

_TO_OS = ((READ, select.POLLIN), (WRITE, select.POLLOUT))
_FROM_OS = ((select.POLLIN, READ), (select.POLLPRI, READ), (select.POLLOUT, WRITE),
            (select.POLLERR, ERROR), (select.POLLNVAL, ERROR), (select.POLLHUP, HUP))


def _to_os(events: int) -> int:
    return sum(os_flag for flag, os_flag in _TO_OS if events & flag)


def _from_os(os_events: int) -> int:
    events = 0
    for os_flag, flag in _FROM_OS:
        if os_events & os_flag:
            events |= flag
    return events


class ExamplePoller(Poller):
    """poll(2) as a plug-in (level-triggered, no fd limit)."""

    name = "example-poll"
    capabilities = Capabilities(edge_triggered=False, constant_time=False, max_fd=None,
                                reports_hup=True)

    @classmethod
    def available(cls) -> str | None:
        """None when it can run here, else why not (shown by `muxio backends`)."""
        return None if hasattr(select, "poll") else "poll(2) is not available on this OS"

    def __init__(self) -> None:
        super().__init__()
        self._poll = select.poll()

    def _os_register(self, fd: int, events: int) -> None:
        self._poll.register(fd, _to_os(events))

    def _os_modify(self, fd: int, events: int, old_events: int) -> None:
        self._poll.modify(fd, _to_os(events))

    def _os_unregister(self, fd: int, old_events: int) -> None:
        self._poll.unregister(fd)

    def _os_poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return [(fd, _from_os(os_events))
                for fd, os_events in self._poll.poll(timeout_to_ms(timeout))]
