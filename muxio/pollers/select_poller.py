"""select(2): portable everywhere, limited to fd < FD_SETSIZE (1024), O(n) per call.

select has no HUP or ERROR sets that mean what muxio means (its third set is for urgent
data), so a peer hang-up or an error is reported the way select reports it: the fd
becomes readable (and/or writable) and the following recv/send tells what happened.
"""

from __future__ import annotations

import errno
import select

from muxio.pollers.base import READ, WRITE, Capabilities, Poller

FD_SETSIZE = 1024
"""glibc's compile-time size of fd_set; CPython's select module refuses larger fds."""


class SelectPoller(Poller):
    name = "select"
    capabilities = Capabilities(edge_triggered=False, constant_time=False, max_fd=FD_SETSIZE,
                                reports_hup=False, checks_fd_itself=False)

    def __init__(self) -> None:
        super().__init__()
        self._readers: set[int] = set()
        self._writers: set[int] = set()

    def _os_register(self, fd: int, events: int) -> None:
        self._os_modify(fd, events, 0)

    def _os_modify(self, fd: int, events: int, old_events: int) -> None:
        if events & READ:
            self._readers.add(fd)
        else:
            self._readers.discard(fd)
        if events & WRITE:
            self._writers.add(fd)
        else:
            self._writers.discard(fd)

    def _os_unregister(self, fd: int, old_events: int) -> None:
        self._readers.discard(fd)
        self._writers.discard(fd)

    def _os_poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is not None and timeout < 0:
            timeout = 0
        try:
            readable, writable, _ = select.select(self._readers, self._writers, (), timeout)
        except OSError as exc:
            # EBADF: an fd was closed while registered. Drop it (the loop hears through
            # `closed_fds`) and report no events this time: the next poll goes on.
            if exc.errno != errno.EBADF or not self._find_closed_fds():
                raise
            return []
        if not writable:
            return [(fd, READ) for fd in readable]
        ready: dict[int, int] = dict.fromkeys(readable, READ)
        for fd in writable:
            ready[fd] = ready.get(fd, 0) | WRITE
        return list(ready.items())

    def _os_close(self) -> None:
        self._readers.clear()
        self._writers.clear()
