"""Adapter: any `selectors.BaseSelector` (an instance or a class) as a muxio Poller.

This is how kqueue, /dev/poll, CPython's own selectors and a user's custom selector
join muxio. Selectors only know READ and WRITE: errors and hang-ups show up as the fd
being ready, and the following recv/send tells what happened (as with select).
An fd registered with no events is kept in muxio's bookkeeping but not in the selector,
because selectors refuse an empty mask.
"""

from __future__ import annotations

import errno
import selectors

from muxio.pollers.base import READ, WRITE, Capabilities, Poller
from muxio.pollers.select_poller import FD_SETSIZE

SELECTOR_CAPABILITIES: dict[str, Capabilities] = {
    "SelectSelector": Capabilities(max_fd=FD_SETSIZE, reports_hup=False),
    "PollSelector": Capabilities(reports_hup=False),
    "EpollSelector": Capabilities(constant_time=True, reports_hup=False, checks_fd_itself=True),
    "DevpollSelector": Capabilities(constant_time=True, reports_hup=False),
    "KqueueSelector": Capabilities(constant_time=True, reports_hup=False),
}


def _to_selector_mask(events: int) -> int:
    return ((selectors.EVENT_READ if events & READ else 0)
            | (selectors.EVENT_WRITE if events & WRITE else 0))


class SelectorsPoller(Poller):
    """Wraps a `selectors` selector; `name` is "selectors" unless given."""

    def __init__(self, selector: selectors.BaseSelector | type[selectors.BaseSelector]
                 | None = None, *, name: str = "selectors") -> None:
        super().__init__()
        if selector is None:
            selector = selectors.DefaultSelector
        self._selector = selector() if isinstance(selector, type) else selector
        self.name = name
        self.capabilities = SELECTOR_CAPABILITIES.get(
            type(self._selector).__name__, Capabilities(reports_hup=False))

    @property
    def selector(self) -> selectors.BaseSelector:
        return self._selector

    def _os_register(self, fd: int, events: int) -> None:
        mask = _to_selector_mask(events)
        if mask:
            self._selector.register(fd, mask)

    def _os_modify(self, fd: int, events: int, old_events: int) -> None:
        old_mask, mask = _to_selector_mask(old_events), _to_selector_mask(events)
        if old_mask and mask == old_mask:
            # A re-arm (the number may name a new file): a selector skips the OS call when
            # the mask is unchanged, so register again.
            self._os_unregister(fd, old_events)
            self._selector.register(fd, mask)
        elif old_mask and mask:
            self._selector.modify(fd, mask)
        elif mask:
            self._selector.register(fd, mask)
        elif old_mask:
            self._selector.unregister(fd)

    def _os_unregister(self, fd: int, old_events: int) -> None:
        if _to_selector_mask(old_events):
            try:
                self._selector.unregister(fd)
            except KeyError:
                pass

    def _os_poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is not None and timeout < 0:
            timeout = 0
        try:
            ready = self._selector.select(timeout)
        except OSError as exc:
            # EBADF (SelectSelector): an fd was closed while registered; drop it.
            if exc.errno != errno.EBADF or not self._find_closed_fds():
                raise
            return []
        return [(key.fd, (READ if mask & selectors.EVENT_READ else 0)
                 | (WRITE if mask & selectors.EVENT_WRITE else 0))
                for key, mask in ready]

    def _os_close(self) -> None:
        self._selector.close()

    def fileno(self) -> int:
        fileno = getattr(self._selector, "fileno", None)
        return int(fileno()) if callable(fileno) else -1
