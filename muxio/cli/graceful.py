"""How a `muxio serve` process stops: gracefully first, then for good.

Theory of operation
-------------------
SIGTERM or SIGINT (or, in a worker, the end of its lifeline: see below) begins a graceful
stop:

1. the service stops accepting: a TCP listener first accepts what the kernel already
   queued (closing a listener resets every connection still in its queue, which the client
   had seen established), then closes;
2. the service asks its connections to finish what they are doing (`drain()`): HTTP
   answers the requests it has with `Connection: close` and ends each connection after
   its response (idle kept-alive ones end at the keep-alive timeout), echo and chat close
   their connections once their buffered output is sent (chat says CLOSING first), DNS
   stops listening and closes its TCP clients after their answers;
3. the loop runs on until the service has no connection left (`open_connections()` is 0) or
   `--graceful-timeout` seconds have passed;
4. `close()` closes whatever is still open, and the process exits 0.

A second SIGTERM/SIGINT during the drain skips to step 4 ("stop now"). A service without
`drain()` is closed at once (step 4), as before graceful stops existed.

A worker started by the supervisor (`muxio serve --workers N`, see muxio.cli.workers) is
an ordinary `muxio serve` process with one difference: its stdin is a pipe whose other end
only the supervisor holds (the lifeline). If the supervisor dies, even by SIGKILL, the
worker reads EOF there and stops gracefully, instead of living on as an orphan that keeps
the port.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Protocol, runtime_checkable

from muxio.loop import Loop, TimerHandle

log = logging.getLogger("muxio.serve")

ENV_WORKER = "MUXIO_WORKER"
"""Set by the supervisor in each worker's environment: the worker's slot number."""
DEFAULT_GRACEFUL_TIMEOUT = 10.0
_CHECK_INTERVAL = 0.05
"""How often the drain looks whether the last connection is gone (cheap: one len())."""
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@runtime_checkable
class Drainable(Protocol):
    """A service that can stop gracefully (what `GracefulStop` asks of it)."""

    def drain(self) -> None:
        """Stop accepting; let each connection finish its work, then end it."""
        ...

    def open_connections(self) -> int:
        """Connections still open (the drain ends when none is left)."""
        ...

    def close(self) -> None:
        """Close everything now (after the drain, or instead of it)."""
        ...


class Closable(Protocol):
    def close(self) -> None: ...


def worker_slot() -> str | None:
    """The worker's slot when the supervisor started this process, else None."""
    return os.environ.get(ENV_WORKER) or None


class GracefulStop:
    """Runs `loop` until a stop is asked for, drains `service`, then closes it.

        stop = GracefulStop(loop, service, timeout=10.0, name="http")
        stop.install()      # SIGINT/SIGTERM are ours from here
        stop.run()          # returns once the service is closed
    """

    def __init__(self, loop: Loop, service: Closable, *, timeout: float, name: str,
                 lifeline: int | None = None) -> None:
        self.loop = loop
        self.service = service
        self.timeout = timeout
        self.name = name
        self.lifeline = lifeline
        """A pipe fd whose EOF means: stop (a worker's stdin; None for a plain serve)."""
        self.draining = False
        self.expired = False
        self._expiry: TimerHandle | None = None
        self._poll: TimerHandle | None = None
        self._installed = False

    def install(self) -> None:
        """Take SIGINT/SIGTERM (and the lifeline) now: call it before saying 'serving',
        so that a signal sent as soon as the line is read is a graceful stop too."""
        loop = self.loop
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, self._signalled, signum)
        if self.lifeline is not None:
            loop.add_reader(self.lifeline, self._lifeline_readable)
        self._installed = True

    def run(self) -> None:
        """Serve until the stop is complete (installs the handlers if not done yet)."""
        loop = self.loop
        if not self._installed:
            self.install()
        try:
            loop.run_forever()
        finally:
            for timer in (self._expiry, self._poll):
                if timer is not None:
                    timer.cancel()
            if self.lifeline is not None:
                loop.remove_reader(self.lifeline)
            self.service.close()
            # Let close callbacks (connection_lost, flushes) run before the loop closes.
            for _ in range(3):
                loop.run_once(0)
            for signum in _STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    def _signalled(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.draining:
            log.info("%s received again: closing %s now", name, self.name)
            self.loop.stop()
            return
        self.begin(f"{name} received")

    def _lifeline_readable(self) -> None:
        assert self.lifeline is not None
        try:
            data = os.read(self.lifeline, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # the pipe is broken: the supervisor is gone all the same
            data = b""
            log.debug("lifeline read failed: %r", exc)
        if data:
            return  # the supervisor never writes; nothing to act on
        self.loop.remove_reader(self.lifeline)
        self.lifeline = None
        if not self.draining:
            self.begin("the supervisor is gone (lifeline closed)")

    def begin(self, reason: str) -> None:
        """Start the graceful stop (idempotent)."""
        if self.draining:
            return
        self.draining = True
        service = self.service
        if not isinstance(service, Drainable):
            log.info("%s: closing %s", reason, self.name)
            self.loop.stop()
            return
        log.info("%s: %s stops accepting and finishes its work (at most %g s)", reason,
                 self.name, self.timeout)
        service.drain()
        self._expiry = self.loop.call_later(self.timeout, self._expire)
        self._check()

    def _expire(self) -> None:
        self.expired = True
        service = self.service
        assert isinstance(service, Drainable)
        log.warning("graceful timeout (%g s) reached: closing the %d connections still "
                    "open", self.timeout, service.open_connections())
        self.loop.stop()

    def _check(self) -> None:
        service = self.service
        assert isinstance(service, Drainable)
        if not service.open_connections():
            self.loop.stop()
            return
        self._poll = self.loop.call_later(_CHECK_INTERVAL, self._check)
