"""Heartbeats: notice a peer that went silent without a FIN (unplugged cable, frozen host).

Theory of operation
-------------------
The shell calls `heard()` (or sets `last_heard`) whenever a complete frame arrives: bytes
alone prove nothing, since a peer dripping one byte of an unfinished frame now and then
would otherwise never be found dead. One timer
per connection, aligned on the last time we heard from the peer, looks at the silence:

- silent for a whole `interval` (or 2, 3... of them): send a PING, so that an idle but alive
  peer has something to answer;
- silent for `interval x misses`: the peer is dead; `on_dead(silence)` is called once.

So the peer gets `misses - 1` PINGs to answer and is declared dead exactly `interval x
misses` seconds after it was last heard (plus timer latency). While traffic flows the timer
only re-arms itself once per interval: no PING is ever sent to a busy peer. The timer comes
from a `Scheduler` (the loop), so tests drive it with a fake clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from muxio.protocols import Cancellable, Scheduler

_EPSILON = 1e-9


def check_heartbeat(interval: float, misses: int,
                    names: tuple[str, str] = ("heartbeat interval", "heartbeat misses")) -> None:
    """ValueError naming the setting (`names`) if the pair cannot work."""
    if not interval > 0 or math.isinf(interval):
        raise ValueError(f"{names[0]} must be a finite number of seconds > 0, got {interval}")
    if misses < 2:
        raise ValueError(f"{names[1]} must be >= 2 (the peer gets misses - 1 PINGs to "
                         f"answer before it is declared dead), got {misses}")


class Heartbeat:
    """PING after each `interval` of silence; `on_dead` after `interval x misses`."""

    __slots__ = ("_scheduler", "interval", "misses", "_ping", "_on_dead", "_timer",
                 "last_heard", "pings_sent", "_stopped")

    def __init__(self, scheduler: Scheduler, interval: float, misses: int,
                 ping: Callable[[], object], on_dead: Callable[[float], object]) -> None:
        check_heartbeat(interval, misses)
        self._scheduler = scheduler
        self.interval = interval
        self.misses = misses
        self._ping = ping
        self._on_dead = on_dead
        self._timer: Cancellable | None = None
        self.last_heard = scheduler.time()
        self.pings_sent = 0
        self._stopped = False

    def start(self) -> None:
        self.last_heard = self._scheduler.time()
        self._arm(self.interval)

    def heard(self) -> None:
        """The peer sent something: it is alive."""
        self.last_heard = self._scheduler.time()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, delay: float) -> None:
        if not self._stopped:
            self._timer = self._scheduler.call_later(max(0.0, delay), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._stopped:
            return
        now = self._scheduler.time()
        silence = now - self.last_heard
        intervals = math.floor((silence + _EPSILON) / self.interval)
        if intervals >= self.misses:
            self._stopped = True
            self._on_dead(silence)
            return
        if intervals >= 1:
            self.pings_sent += 1
            self._ping()
        # Next look: the next multiple of the interval after the last time we heard.
        self._arm(self.last_heard + (intervals + 1) * self.interval - now)
