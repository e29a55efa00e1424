"""poll(2): no fd limit, O(n) per call in the number of registered fds.

poll reports POLLHUP/POLLERR whatever was asked, and POLLNVAL, on every call, for an fd
closed while registered: such an fd is unregistered and listed in `closed_fds` (the loop
drops its callbacks), as epoll forgets a closed file by itself.

Linux's POLLIN/POLLOUT/POLLERR/POLLHUP are muxio's READ/WRITE/ERROR/HUP and we never ask
for POLLPRI, so a result is poll's own list unless some event carries another flag
(POLLNVAL, or POLLPRI/POLLRDHUP on a platform whose values differ): one scan of the flags,
no translated list per poll.
"""

from __future__ import annotations

import select

from muxio.pollers.base import ERROR, HUP, READ, WRITE, Capabilities, Poller, timeout_to_ms
from muxio.pollers.translate import EventTranslator

_TRANSLATOR = EventTranslator(
    read=select.POLLIN, write=select.POLLOUT, error=select.POLLERR, hup=select.POLLHUP,
    extra_read=select.POLLPRI)
_IDENTITY = _TRANSLATOR.identity
_NOT_MUXIO = ~(READ | WRITE | ERROR | HUP)
"""Result flags that need translating or handling (POLLNVAL above all)."""


class PollPoller(Poller):
    name = "poll"
    capabilities = Capabilities(edge_triggered=False, constant_time=False, max_fd=None,
                                reports_hup=True, checks_fd_itself=False)

    def __init__(self) -> None:
        super().__init__()
        self._poll = select.poll()

    def _os_register(self, fd: int, events: int) -> None:
        self._poll.register(fd, _TRANSLATOR.to_os(events))

    def _os_modify(self, fd: int, events: int, old_events: int) -> None:
        self._poll.modify(fd, _TRANSLATOR.to_os(events))

    def _os_unregister(self, fd: int, old_events: int) -> None:
        self._poll.unregister(fd)

    def _os_poll(self, timeout: float | None) -> list[tuple[int, int]]:
        raw = self._poll.poll(timeout_to_ms(timeout))
        if _IDENTITY:
            for _fd, os_events in raw:
                if os_events & _NOT_MUXIO:
                    break
            else:
                return raw  # the common case: the flags are muxio's already
        invalid = [fd for fd, os_events in raw if os_events & select.POLLNVAL]
        if invalid:
            for fd in invalid:
                self._found_closed(fd)
            raw = [(fd, os_events) for fd, os_events in raw
                   if not os_events & select.POLLNVAL]
        return _TRANSLATOR.results(raw)
