"""Limits and timers of the chat server and client, each in one frozen value."""

from __future__ import annotations

import math
from dataclasses import dataclass

from muxio.handlers.chat.framing import DEFAULT_MAX_FRAME, check_max_frame
from muxio.handlers.chat.heartbeat import check_heartbeat
from muxio.handlers.chat.messages import PROTOCOL_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatServerConfig:
    """What the server accepts and how it watches its clients. Sizes in bytes, times in
    seconds on the `Scheduler`'s clock."""

    heartbeat_interval: float = 10.0
    """A client silent this long gets a PING (and another after each further interval)."""
    heartbeat_misses: int = 3
    """A client silent for interval x misses is dead: dropped, its transport closed."""
    max_frame: int = DEFAULT_MAX_FRAME
    """Largest frame accepted (its length field), announced in HELLO_OK; also the largest
    frame the server sends (long lists are split)."""
    high_water: int = 64 * 1024
    """Transport water mark: above it the server stops reading that client's requests
    until its responses drain (the client cannot make us buffer its own answers)."""
    max_output_buffer: int = 1024 * 1024
    """Bytes waiting to go to one client. A message or indication that would pass it is not
    delivered and that client is dropped as a slow receiver (logged)."""
    max_clients: int = 10_000
    """Clients in the list at once; one more HELLO gets SERVER_FULL and is closed."""
    max_protocol_errors: int = 100
    """Invalid frames in a row (each answered with ERROR) before the client is dropped
    (it still reads those ERRORs and a CLOSING saying why: see linger_timeout)."""
    hello_timeout: float = 10.0
    """A connection that has not completed HELLO this long after it opened gets CLOSING
    and is closed (PINGs keep the heartbeat happy, not an un-greeted connection)."""
    max_ungreeted: int = 512
    """Connections still without HELLO_OK at once. Past it, the oldest of them are evicted
    (CLOSING, then closed) once they have waited `ungreeted_grace`, as NSD does with
    tcp-count: a flood of connections that never greet cannot hold every fd and lock out
    the clients that do. Keep it well below the process's fd limit (ulimit -n)."""
    ungreeted_grace: float = 1.0
    """How long a connection may wait for its HELLO to be read before it can be evicted
    for being over max_ungreeted: in a storm of connections (a thousand clients
    reconnecting at once) the server accepts faster than it reads, and the HELLOs waiting
    in the sockets must not cost their clients the connection."""
    frames_per_turn: int = 32
    """Frames handled for one connection before the others (and the loop's timers and
    signals) get their turn; the rest of what it pipelined waits, with its reading
    paused, for the next loop iteration."""
    linger_timeout: float = 2.0
    """When the server closes a connection (BYE_OK, CLOSING, too many invalid frames, the
    hello deadline), how long the last frames have to go out (and what the client still
    sends is read and dropped, so that it reads them instead of a reset) before the
    connection is dropped."""

    def __post_init__(self) -> None:
        check_heartbeat(self.heartbeat_interval, self.heartbeat_misses,
                        names=("ChatServerConfig.heartbeat_interval",
                               "ChatServerConfig.heartbeat_misses"))
        try:
            check_max_frame(self.max_frame)
        except ValueError as exc:
            raise ValueError(f"ChatServerConfig.{exc}") from None
        for name in ("high_water", "max_clients", "max_protocol_errors", "max_ungreeted",
                     "frames_per_turn"):
            if getattr(self, name) < 1:
                raise ValueError(f"ChatServerConfig.{name} must be >= 1, "
                                 f"got {getattr(self, name)}")
        for name in ("hello_timeout", "linger_timeout", "ungreeted_grace"):
            value = getattr(self, name)
            if not value > 0 or math.isinf(value):
                raise ValueError(f"ChatServerConfig.{name} must be a finite number of seconds "
                                 f"> 0, got {value}")
        least = max(self.high_water, self.max_frame) * 2
        if self.max_output_buffer < least:
            raise ValueError(
                f"ChatServerConfig.max_output_buffer must be at least {least} bytes (twice the "
                f"larger of the water mark {self.high_water} and the maximum frame "
                f"{self.max_frame}), got {self.max_output_buffer}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatClientConfig:
    """How the client greets and watches the server."""

    version: int = PROTOCOL_VERSION
    """Protocol version asked for in HELLO."""
    heartbeat_misses: int = 3
    """The server is dead after its announced heartbeat interval x this many of silence
    (the client PINGs it after each interval of silence, like the server does)."""
    max_frame: int = DEFAULT_MAX_FRAME
    """Largest frame accepted before HELLO_OK (then the server's announced maximum)."""

    def __post_init__(self) -> None:
        if not 0 < self.version <= 0xFFFF:
            raise ValueError(f"ChatClientConfig.version must be 1-65535, got {self.version}")
        if self.heartbeat_misses < 2:
            raise ValueError(f"ChatClientConfig.heartbeat_misses must be >= 2, "
                             f"got {self.heartbeat_misses}")
        try:
            check_max_frame(self.max_frame)
        except ValueError as exc:
            raise ValueError(f"ChatClientConfig.{exc}") from None
