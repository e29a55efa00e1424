"""Who may open a KCP session on a server socket, and who is evicted when it is full.

Theory of operation
-------------------
KCP has no handshake: any 24-byte datagram that looks like a first segment (a WASK, or a
PUSH with sn 0) opens a session, and its source address may be forged. So a session starts
*unproven*, and becomes *proven* once its peer shows it is live and receives what we send:
it acknowledges data of ours, answers our window probe, or a second datagram of it is
accepted by the KCP core. (KCP carries no nonce, so this is the same proof any KCP
implementation can have; it stops a flood of one-datagram openings, which is what costs an
attacker nothing.)

`SessionTable` keeps the counts that admission needs in O(1) per datagram:

- a cap on the sessions of one source host (IP address, any port): one machine cannot take
  the table;
- unproven sessions in opening order, globally and per host, so that when the table (or a
  host's share) is full the oldest unproven one is evicted to admit the newcomer, and a
  proven session is never evicted by an opening;
- refusals (table full of proven sessions) counted, and logged at most once per second with
  the count since the last line, so a flood cannot flood the log too.

`ExpiringKeys` remembers recently closed (address, conv) pairs for a fixed time, so that
late datagrams of a closed session do not reopen it. The lifetime is the same for every
key, so insertion order is expiry order: expired keys are dropped from the front as new
ones arrive (amortised O(1), no rebuild), and a capacity bounds the memory under churn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger("muxio.kcp")

K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound="Evictable")


class Evictable(Protocol):
    @property
    def key(self) -> tuple[Any, int]: ...

    def evict(self) -> None: ...


class ExpiringKeys(Generic[K]):
    """A set whose members vanish `ttl` seconds after they were added (or re-added)."""

    __slots__ = ("_clock", "_ttl", "capacity", "_until")

    def __init__(self, ttl: float, capacity: int, clock: Callable[[], float]) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._ttl = ttl
        self.capacity = capacity
        self._clock = clock
        self._until: dict[K, float] = {}

    def add(self, key: K) -> None:
        now = self._clock()
        until = self._until
        until.pop(key, None)  # re-added: moves to the back (insertion order = expiry order)
        until[key] = now + self._ttl
        self._expire(now)
        while len(until) > self.capacity:
            del until[next(iter(until))]

    def __contains__(self, key: object) -> bool:
        until = self._until.get(key)  # type: ignore[arg-type]
        return until is not None and until > self._clock()

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._until)

    def _expire(self, now: float) -> None:
        until = self._until
        while until:
            first = next(iter(until))
            if until[first] > now:
                return
            del until[first]


def host_of(address: Any) -> Any:
    """The source host of a socket address: the IP, whatever the port (or the address
    itself for families without a port)."""
    return address[0] if isinstance(address, tuple) else address


class SessionTable(Generic[S]):
    """Admission bookkeeping for one server endpoint (see the module docstring)."""

    def __init__(self, max_sessions: int, max_per_host: int, clock: Callable[[], float]) -> None:
        if max_sessions <= 0 or max_per_host <= 0:
            raise ValueError("max_sessions and max_sessions_per_address must be positive")
        self.max_sessions = max_sessions
        self.max_per_host = max_per_host
        self._clock = clock
        self._per_host: dict[Any, int] = {}
        self._unproven: dict[tuple[Any, int], S] = {}  # opening order
        self._unproven_by_host: dict[Any, dict[tuple[Any, int], S]] = {}
        self.count = 0
        self.refused = 0
        self.evicted = 0
        self._refused_unlogged = 0
        self._last_log = float("-inf")

    @property
    def unproven(self) -> int:
        return len(self._unproven)

    def admit(self, address: Any) -> bool:
        """Make room for a new session from `address`, evicting the oldest unproven session
        of its host (host at its cap) or of the table (table full); False = refuse."""
        host = host_of(address)
        if self._per_host.get(host, 0) >= self.max_per_host:
            of_host = self._unproven_by_host.get(host)
            if not of_host:
                self._refuse(f"source {host} has {self.max_per_host} live sessions "
                             f"(max_sessions_per_address)")
                return False
            self._evict(next(iter(of_host.values())))
        if self.count >= self.max_sessions:
            if not self._unproven:
                self._refuse(f"session table full ({self.max_sessions} live sessions; "
                             f"raise max_sessions)")
                return False
            self._evict(next(iter(self._unproven.values())))
        return True

    def added(self, session: S, address: Any) -> None:
        host = host_of(address)
        self.count += 1
        self._per_host[host] = self._per_host.get(host, 0) + 1
        self._unproven[session.key] = session
        self._unproven_by_host.setdefault(host, {})[session.key] = session

    def proven(self, session: S) -> None:
        key = session.key
        if self._unproven.pop(key, None) is not None:
            self._drop_unproven_of_host(key)

    def removed(self, session: S) -> None:
        key = session.key
        host = host_of(key[0])
        self.count -= 1
        left = self._per_host.get(host, 1) - 1
        if left > 0:
            self._per_host[host] = left
        else:
            self._per_host.pop(host, None)
        if self._unproven.pop(key, None) is not None:
            self._drop_unproven_of_host(key)

    def _drop_unproven_of_host(self, key: tuple[Any, int]) -> None:
        host = host_of(key[0])
        of_host = self._unproven_by_host.get(host)
        if of_host is not None:
            of_host.pop(key, None)
            if not of_host:
                del self._unproven_by_host[host]

    def _evict(self, session: S) -> None:
        self.evicted += 1
        session.evict()  # ends in removed(session)

    def _refuse(self, why: str) -> None:
        self.refused += 1
        self._refused_unlogged += 1
        now = self._clock()
        if now - self._last_log >= 1.0:
            log.warning("kcp: %d new session(s) refused: %s", self._refused_unlogged, why)
            self._refused_unlogged = 0
            self._last_log = now
