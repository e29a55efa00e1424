"""A loop's io_uring completion port: user_data for requests, their CQEs routed back.

Theory of operation
-------------------
Completion-mode transports (uring_tcp.py) put requests on the poller's ring: a RECV, a
SEND, an ACCEPT. Each gets a user_data from `token(handler)` with the poller's
`COMPLETION` bit set; the poller keeps those CQEs aside and reports the ring's own fd
READ, and the port, registered as that fd's reader, calls each handler with (res, flags)
in the order the kernel completed them. A handler is forgotten with its request's last
CQE (one without MORE). An exception from a handler goes to the loop's exception handler
and the other completions of the batch still run.

The port also owns the loop's provided-buffer ring, shared by every connection's RECV.
When the loop closes, fds the kernel accepted for us that nobody has seen yet are
closed, so that closing a loop with a busy listener leaks nothing.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable

from muxio.loop import Loop
from muxio.pollers.uring_buffers import BufferRing
from muxio.pollers.uring_poller import COMPLETION, UringPoller
from muxio.pollers.uring_ring import IORING_CQE_F_MORE

BUFFERS = 256
BUFFER_SIZE = 16 * 1024
"""The buffer ring: 256 x 16 KiB = 4 MiB per loop, shared by all its connections."""
BUFFER_GROUP = 0
_IGNORED = COMPLETION
"""user_data of cancel requests: only a failure posts a CQE, and nobody waits for it."""

Handler = Callable[[int, int], None]


class CompletionPort:
    """One per loop: hands out user_data for requests and routes their CQEs back."""

    def __init__(self, loop: Loop, poller: UringPoller) -> None:
        self.loop = loop
        self.ring = poller.ring
        self._poller = poller
        self.buffers = BufferRing(poller.ring, BUFFER_GROUP, BUFFERS, BUFFER_SIZE)
        self._handlers: dict[int, Handler] = {}
        self._serial = 0
        self._gives_fd: set[int] = set()
        """Requests whose result is a new fd (ACCEPT): closed if still unseen at the end."""
        loop.add_reader(poller.fileno(), self._dispatch)
        poller.call_on_close(self._close)

    def token(self, handler: Handler, *, gives_fd: bool = False) -> int:
        self._serial = (self._serial + 1) & 0xFFFFFFFFFFFF
        user_data = COMPLETION | self._serial
        self._handlers[user_data] = handler
        if gives_fd:
            self._gives_fd.add(user_data)
        return user_data

    def cancel(self, user_data: int) -> None:
        self.ring.prep_cancel(user_data, _IGNORED)

    def submit_now(self) -> None:
        """Hand the SQEs written so far to the kernel (before closing an fd they name)."""
        if self.ring.pending:
            self.ring.enter(0)

    def _dispatch(self) -> None:
        handlers = self._handlers
        for user_data, res, flags in self._poller.take_completions():
            handler = handlers.get(user_data)
            if handler is None:
                continue
            if not flags & IORING_CQE_F_MORE:
                del handlers[user_data]
                self._gives_fd.discard(user_data)
            try:
                handler(res, flags)
            except Exception as exc:
                self.loop.call_exception_handler({
                    "message": f"exception in io_uring completion {handler!r}",
                    "exception": exc})

    def _close(self) -> None:
        """The loop is closing: fds the kernel accepted for us that nobody saw yet would
        leak, so they are closed; everything else in flight ends with the ring."""
        self.ring.enter(0)  # run pending completion work, bring overflowed CQEs in
        for user_data, res, _flags in self._poller.take_completions() + self.ring.completions():
            if user_data in self._gives_fd and res >= 0:
                os.close(res)
        self._gives_fd.clear()
        self._handlers.clear()
        self.buffers.close()
        _PORTS.pop(self._poller, None)


_PORTS: weakref.WeakKeyDictionary[UringPoller, CompletionPort] = weakref.WeakKeyDictionary()


def completion_port(loop: Loop) -> CompletionPort | None:
    """The loop's port, created on first use; None if its backend is not io_uring."""
    poller = loop.poller
    if not isinstance(poller, UringPoller) or not getattr(poller, "completion_io", False):
        return None
    port = _PORTS.get(poller)
    if port is None:
        port = _PORTS[poller] = CompletionPort(loop, poller)
    return port
