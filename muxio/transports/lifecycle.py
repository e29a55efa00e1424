"""One lifecycle for every transport (TCP, UDP, KCP, TLS, in-memory), written once.

Theory of operation
-------------------
A transport is *open*, then *closing* (`close()` was called: no more reads, what is queued
still goes out), then *lost* (`connection_lost` is scheduled; the protocol hears nothing
more). `abort()`, a fatal socket error and an exception raised by the protocol go
straight to lost. The rules every transport keeps, because they live here:

- `connection_lost(exc)` is called exactly once, from the loop (never re-entrantly from
  inside a call the protocol made), after the last `data_received`; then `_release()`
  frees what the transport holds (its socket, timers, its place in a server).
- An exception raised by a protocol callback is reported to the loop's exception handler
  (or logged) with the transport and peer named, and aborts that connection only; its
  `connection_lost` receives the exception.
- `is_closing`, `get_extra_info`, `get_protocol`, `set_protocol` mean the same everywhere.

A transport supplies `_abort(exc)` (stop all I/O now, drop what is queued, then call
`_lose(exc)`), and `_release()`. Write-side water marks come from `FlowControl`.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from muxio.protocols import Scheduler
from muxio.transports.flow import FlowControl

log = logging.getLogger("muxio.transports")


class _FdWatcher(TypingProtocol):
    def is_closed(self) -> bool: ...

    def remove_reader(self, fileobj: int) -> bool: ...

    def remove_writer(self, fileobj: int) -> bool: ...


def release_socket(loop: _FdWatcher, fd: int, sock: socket.socket) -> None:
    """The end of a socket transport: stop watching its fd (unless the loop is already
    closed), then close the socket. Safe to call twice."""
    if not loop.is_closed():
        loop.remove_reader(fd)
        loop.remove_writer(fd)
    sock.close()


class TransportLifecycle(FlowControl):
    """Base of every muxio transport: closing states, connection_lost once, error reports."""

    __slots__ = ("_scheduler", "_extra", "_closing", "_lost")
    _scheduler: Scheduler
    _extra: dict[str, Any]
    _closing: bool
    _lost: bool

    def _init_lifecycle(self, scheduler: Scheduler, protocol: Any,
                        extra: dict[str, Any]) -> None:
        self._scheduler = scheduler
        self._protocol = protocol
        self._extra = extra
        self._closing = False
        self._lost = False

    # -- what the protocol sees ----------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def abort(self) -> None:
        """Close now, dropping whatever is queued; connection_lost(None) follows."""
        self._abort(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    # -- for the transport ---------------------------------------------------------------

    if TYPE_CHECKING:
        def _abort(self, exc: Exception | None) -> None:
            """Stop all I/O now, drop what is queued, then `_lose(exc)` (per transport)."""

    def _release(self) -> None:
        """Free what the transport holds; runs once, right after connection_lost."""

    def _lose(self, exc: Exception | None) -> bool:
        """Schedule `connection_lost(exc)`, once; False if it already was."""
        if self._lost:
            return False
        self._lost = True
        self._closing = True
        self._scheduler.call_soon(self._call_connection_lost, exc)
        return True

    def _call_connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        except Exception as error:
            self._report_protocol_error(error, "connection_lost")
        finally:
            self._release()

    def _protocol_failed(self, exc: Exception, what: str) -> None:
        """A protocol callback raised: report it and abort this connection only."""
        self._report_protocol_error(exc, what, aborting=True)
        self._abort(exc)

    def _report_protocol_error(self, exc: Exception, what: str, *,
                               aborting: bool = False) -> None:
        message = (f"{type(self._protocol).__name__}.{what} raised"
                   f"{'; aborting' if aborting else ' on'} "
                   f"{self.get_extra_info('transport', 'transport')} "
                   f"{self.get_extra_info('peername') or self.get_extra_info('sockname')}")
        handler = getattr(self._scheduler, "call_exception_handler", None)
        if handler is None:
            log.error("%s", message, exc_info=exc)
            return
        handler({"message": message, "exception": exc, "transport": self,
                 "protocol": self._protocol})

    def _state(self) -> str:
        return "closed" if self._lost else "closing" if self._closing else "open"

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} "
                f"{self.get_extra_info('peername') or self.get_extra_info('sockname')} "
                f"{self._state()}>")
