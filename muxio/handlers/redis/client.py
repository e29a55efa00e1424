"""A small Redis client over any muxio stream transport: one connection (`RedisProtocol`)
and a link that keeps one open (`RedisLink`).

Theory of operation
-------------------
`RedisProtocol` is a `Protocol` like any handler: it writes commands (`resp.
encode_command`) and feeds what arrives to a `RespParser`. Commands are pipelined: each
waits in a FIFO with its callback, and Redis answers in order, so the n-th reply belongs to
the n-th command. A subscriber connection also receives pushes (`message` arrays) that
answer no command: they go to `on_message`. Everything is bounded: the replies (the
parser's limits), the commands waiting for a reply (`max_pending`: one more is refused at
once), and the bytes waiting to go to Redis (`max_output`: idem). The commands of one
loop iteration go out in one write (a `call_soon` flush): a burst of forwarded messages
costs one send(2), not one each. A command unanswered
for `command_timeout` means Redis is gone or stuck: the connection is aborted and every
waiting command fails.

`RedisLink` owns the current connection: it opens one through a *connector* handed in by
the host (the handler floor never opens a socket itself, as it never owns a clock: see
`muxio.handlers`), reports `on_up` / `on_down`, and reconnects after a loss with
exponential backoff (`backoff_min` doubling up to `backoff_max`). While it is down a
command fails with `RedisUnavailable`. Callbacks are never called from inside `command`:
a refusal is delivered through `call_soon`, so that a caller never sees its callback run
before `command` returns.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from muxio.handlers.redis.resp import (
    CommandArg,
    NeedData,
    RedisError,
    RespParser,
    RespProtocolError,
    RespValue,
    encode_command,
)
from muxio.protocols import Cancellable, Protocol, Scheduler, Transport

log = logging.getLogger("muxio.redis")

Reply = RespValue | Exception
"""What a command's callback gets: the reply, or why there is none (`RedisUnavailable`,
`RedisBusy`); an error reply is a `RedisError` value."""
ReplyCallback = Callable[[Reply], object]
Connector = Callable[[Callable[[], Protocol], Callable[[Exception], object]], object]
"""`connector(factory, on_error)`: open a connection whose protocol is `factory()`, or call
`on_error(exc)` if it cannot be opened (the host provides it: `muxio.connect` for muxio)."""


class RedisUnavailable(Exception):
    """No connection to Redis right now (down, connecting, or lost with the command)."""


class RedisBusy(RedisUnavailable):
    """The connection has `max_pending` commands waiting, or `max_output` bytes unsent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisLimits:
    """Bounds and timers of one Redis connection (sizes in bytes, times in seconds)."""

    max_pending: int = 10_000
    """Commands sent and not yet answered; one more is refused with RedisBusy."""
    max_output: int = 8 * 1024 * 1024
    """Bytes waiting to be sent to Redis; a command that would pass it is refused."""
    max_reply: int = 64 * 1024 * 1024
    """Bytes of one reply (a LIST of many clients is one reply)."""
    command_timeout: float = 5.0
    """A command unanswered this long: Redis is gone or stuck, the connection is aborted."""
    connect_timeout: float = 5.0
    backoff_min: float = 0.05
    backoff_max: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_pending", "max_output", "max_reply"):
            if getattr(self, name) < 1:
                raise ValueError(f"RedisLimits.{name} must be at least 1")
        for name in ("command_timeout", "connect_timeout", "backoff_min", "backoff_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RedisLimits.{name} must be positive")


class RedisProtocol(Protocol):
    """One connection to Redis (see the module docstring)."""

    def __init__(self, scheduler: Scheduler, limits: RedisLimits, *,
                 on_ready: Callable[[RedisProtocol], object],
                 on_lost: Callable[[RedisProtocol, Exception | None], object],
                 on_message: Callable[[bytes, bytes], object] | None = None) -> None:
        self.scheduler = scheduler
        self.limits = limits
        self.transport: Transport | None = None
        self.parser = RespParser(max_reply=limits.max_reply, max_bulk=limits.max_reply)
        self._waiting: deque[tuple[float, ReplyCallback]] = deque()
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._on_message = on_message
        self._timer: Cancellable | None = None
        self._closed = False
        self._out: list[bytes] = []
        """Commands not yet written: those of one loop iteration go in one write."""
        self._out_size = 0
        self._flush_handle: Cancellable | None = None

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._on_ready(self)

    def command(self, args: tuple[CommandArg, ...], callback: ReplyCallback) -> None:
        """Send one command; `callback(reply)` once answered (or failed: never twice)."""
        self.send_encoded(encode_command(*args), callback)

    def send_encoded(self, data: bytes, callback: ReplyCallback) -> None:
        """`command` for a command already encoded (exactly one RESP array)."""
        transport = self.transport
        if transport is None or self._closed or transport.is_closing():
            self.scheduler.call_soon(callback, RedisUnavailable("the Redis connection is "
                                                                "closed"))
            return
        if len(self._waiting) >= self.limits.max_pending:
            self.scheduler.call_soon(callback, RedisBusy(
                f"{self.limits.max_pending} Redis commands are already waiting for a reply"))
            return
        unsent = transport.get_write_buffer_size() + self._out_size
        if unsent + len(data) > self.limits.max_output:
            self.scheduler.call_soon(callback, RedisBusy(
                f"more than {self.limits.max_output} bytes are waiting to go to Redis"))
            return
        now = self.scheduler.time()
        self._waiting.append((now, callback))
        self._out.append(data)
        self._out_size += len(data)
        if self._flush_handle is None:
            self._flush_handle = self.scheduler.call_soon(self._flush)
        if self._timer is None:
            self._timer = self.scheduler.call_later(self.limits.command_timeout,
                                                    self._check_timeout)

    def _flush(self) -> None:
        self._flush_handle = None
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_size = 0
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._waiting or self._closed:
            return
        oldest = self._waiting[0][0]
        overdue = oldest + self.limits.command_timeout - self.scheduler.time()
        if overdue <= 0:
            log.warning("Redis did not answer within %g s: dropping the connection",
                        self.limits.command_timeout)
            self.abort()
            return
        self._timer = self.scheduler.call_later(overdue, self._check_timeout)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        while not self._closed:
            try:
                reply = parser.next_reply()
            except RespProtocolError as exc:
                log.warning("Redis sent something that is not RESP2 (%s): dropping the "
                            "connection", exc)
                self.abort()
                return
            if isinstance(reply, NeedData):
                return
            if (self._on_message is not None and isinstance(reply, list) and len(reply) == 3
                    and reply[0] == b"message" and isinstance(reply[1], bytes)
                    and isinstance(reply[2], bytes)):
                self._on_message(reply[1], reply[2])
                continue
            if not self._waiting:
                log.warning("Redis sent a reply to no command: dropping the connection")
                self.abort()
                return
            _, callback = self._waiting.popleft()
            callback(reply)

    def eof_received(self) -> bool:
        return False

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close after what is written (Redis still runs the commands it reads)."""
        self._flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        for handle in (self._timer, self._flush_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._flush_handle = None
        self._out.clear()
        self._out_size = 0
        waiting, self._waiting = self._waiting, deque()
        error = RedisUnavailable(f"the connection to Redis was lost"
                                 f"{f' ({exc})' if exc else ''}")
        for _, callback in waiting:
            callback(error)
        self.transport = None
        self._on_lost(self, exc)


class RedisLink:
    """Keeps one Redis connection open: connects, reports up/down, reconnects with
    backoff (see the module docstring). `close()` for good."""

    def __init__(self, scheduler: Scheduler, connector: Connector, *, name: str,
                 limits: RedisLimits | None = None,
                 on_up: Callable[[], object] = lambda: None,
                 on_down: Callable[[str], object] = lambda reason: None,
                 on_message: Callable[[bytes, bytes], object] | None = None) -> None:
        self.scheduler = scheduler
        self.connector = connector
        self.name = name
        self.limits = limits or RedisLimits()
        self.on_up = on_up
        self.on_down = on_down
        self.on_message = on_message
        self.connection: RedisProtocol | None = None
        """The open connection, None while down."""
        self._attempt: RedisProtocol | None = None
        self._backoff = self.limits.backoff_min
        self._retry: Cancellable | None = None
        self._connect_timer: Cancellable | None = None
        self._was_up = False
        self._closed = False
        self._failures = 0
        self.reconnects = 0

    @property
    def up(self) -> bool:
        return self.connection is not None

    def start(self) -> None:
        self._connect()

    def command(self, *args: CommandArg, callback: ReplyCallback = lambda reply: None) -> None:
        connection = self.connection
        if connection is None:
            self.scheduler.call_soon(callback, RedisUnavailable(
                f"Redis ({self.name}) is unreachable; reconnecting"))
            return
        connection.command(args, callback)

    def send_encoded(self, data: bytes, callback: ReplyCallback) -> None:
        """`command` for a command already encoded (exactly one RESP array): for a hot
        path whose command differs only in its last arguments."""
        connection = self.connection
        if connection is None:
            self.scheduler.call_soon(callback, RedisUnavailable(
                f"Redis ({self.name}) is unreachable; reconnecting"))
            return
        connection.send_encoded(data, callback)

    def _connect(self) -> None:
        self._retry = None
        if self._closed:
            return
        protocol = RedisProtocol(self.scheduler, self.limits, on_ready=self._ready,
                                 on_lost=self._lost, on_message=self.on_message)
        self._attempt = protocol
        self._connect_timer = self.scheduler.call_later(self.limits.connect_timeout,
                                                        self._connect_timed_out, protocol)
        try:
            self.connector(lambda: protocol, lambda exc: self._failed(protocol, exc))
        except OSError as exc:
            self._failed(protocol, exc)

    def _connect_timed_out(self, protocol: RedisProtocol) -> None:
        if self._attempt is protocol:
            self._failed(protocol, TimeoutError(
                f"no connection within {self.limits.connect_timeout:g} s"))

    def _ready(self, protocol: RedisProtocol) -> None:
        if self._attempt is not protocol or self._closed:
            protocol.abort()
            return
        self._attempt = None
        self._cancel_connect_timer()
        self.connection = protocol
        self._backoff = self.limits.backoff_min
        self._failures = 0
        if self._was_up:
            self.reconnects += 1
        log.info("connected to Redis (%s)", self.name)
        self._was_up = True
        self.on_up()

    def _failed(self, protocol: RedisProtocol, exc: Exception) -> None:
        if self._attempt is not protocol:
            return
        self._attempt = None
        self._cancel_connect_timer()
        protocol.abort()
        self._schedule_retry(f"cannot connect to Redis ({self.name}): {exc}")

    def _lost(self, protocol: RedisProtocol, exc: Exception | None) -> None:
        if self.connection is not protocol:
            return
        self.connection = None
        if self._closed:
            return
        reason = f"lost the connection to Redis ({self.name}){f': {exc}' if exc else ''}"
        self.on_down(reason)
        self._schedule_retry(reason)

    def _schedule_retry(self, reason: str) -> None:
        if self._closed:
            return
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.limits.backoff_max)
        self._failures += 1
        # The first failure of an outage is a warning; the retries that follow, debug.
        log.log(logging.WARNING if self._failures == 1 else logging.DEBUG,
                "%s; retrying in %.2f s (then every %g s at most)", reason, delay,
                self.limits.backoff_max)
        self._retry = self.scheduler.call_later(delay, self._connect)

    def _cancel_connect_timer(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def drop(self) -> None:
        """Abort the current connection (a reconnect follows): for a peer that misbehaves
        above the RESP level."""
        if self.connection is not None:
            self.connection.abort()

    def close(self) -> None:
        """For good: what is written is still sent, no reconnect."""
        self._closed = True
        self._cancel_connect_timer()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._attempt is not None:
            self._attempt.abort()
            self._attempt = None
        if self.connection is not None:
            connection, self.connection = self.connection, None
            connection.close()


__all__ = ["Connector", "RedisBusy", "RedisError", "RedisLimits", "RedisLink",
           "RedisProtocol", "RedisUnavailable", "Reply", "ReplyCallback"]
