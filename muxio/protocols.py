"""The handler-facing API: what a handler sees of the world, and all it may import.

Names follow asyncio's (`connection_made`, `data_received`, `write`, `pause_reading`...),
so Python users already know them and an adapter can host the same handler on asyncio,
uvloop or Twisted with almost no glue. Every muxio transport (TCP, KCP, in-memory)
implements `Transport`; UDP implements `DatagramTransport`.

Contract, as a handler can rely on it:
- `connection_made(transport)` first, exactly once.
- then any number of `data_received(data)`, then at most one `eof_received()`.
  If `eof_received` returns a true value the transport stays open for writing (half-close),
  otherwise it closes itself.
- `connection_lost(exc)` last, exactly once, after the last `data_received`; `exc` is None
  for a clean close/EOF and the error otherwise (e.g. ConnectionResetError).
- `pause_writing()` when the transport's write buffer goes above the high-water mark,
  `resume_writing()` when it drains below the low-water mark.
- Callbacks run in the loop; a handler must not block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from typing import Protocol as TypingProtocol

Address = Any
"""A peer address as the transport reports it: (host, port) for IPv4, (host, port, flow,
scope) for IPv6; a string for UNIX sockets."""


class BaseProtocol:
    """Callbacks shared by stream and datagram protocols. Override what you need."""

    def connection_made(self, transport: Any) -> None:
        """The transport is ready; keep a reference to write to it."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport is closed (exc is None for a clean close). Called exactly once."""

    def pause_writing(self) -> None:
        """The transport's buffer went over the high-water mark: stop writing for now."""

    def resume_writing(self) -> None:
        """The buffer drained below the low-water mark: writing may go on."""


class Protocol(BaseProtocol):
    """A stream protocol (TCP, KCP): bytes in, bytes out."""

    def connection_made(self, transport: Transport) -> None:
        """The transport is ready; keep a reference to write to it."""

    def data_received(self, data: bytes) -> None:
        """Some bytes arrived. Message boundaries are not preserved: frame them yourself."""

    def eof_received(self) -> bool | None:
        """The peer closed its write side. Return True to keep writing (half-close)."""
        return None


class DatagramProtocol(BaseProtocol):
    """A datagram protocol (UDP): each call is one whole datagram."""

    def connection_made(self, transport: DatagramTransport) -> None:
        """The endpoint is ready."""

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """One datagram from `addr`."""

    def error_received(self, exc: Exception) -> None:
        """A send or receive failed (e.g. ICMP port unreachable); the endpoint stays open."""


class BaseTransport(TypingProtocol):
    """What every transport offers."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """'peername', 'sockname', 'socket', 'backend', 'transport' (e.g. 'tcp', 'kcp')."""
        ...

    def is_closing(self) -> bool:
        """True once close() or abort() was called or the connection was lost."""
        ...

    def close(self) -> None:
        """Close after the buffered data is sent; connection_lost(None) follows."""
        ...


class ReadTransport(BaseTransport, TypingProtocol):
    def pause_reading(self) -> None:
        """Stop calling data_received until resume_reading (flow control toward the peer)."""
        ...

    def resume_reading(self) -> None: ...

    def is_reading(self) -> bool: ...


class WriteTransport(BaseTransport, TypingProtocol):
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send now if possible; buffer the rest (never blocks). Watch pause_writing."""
        ...

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None: ...

    def write_eof(self) -> None:
        """Close the write side after the buffered data (TCP: shutdown(SHUT_WR))."""
        ...

    def can_write_eof(self) -> bool: ...

    def abort(self) -> None:
        """Close now, dropping buffered data; connection_lost(None) follows."""
        ...

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Water marks for pause_writing/resume_writing (defaults 64 KiB / high // 4)."""
        ...

    def get_write_buffer_size(self) -> int: ...

    def get_write_buffer_limits(self) -> tuple[int, int]: ...


class Transport(ReadTransport, WriteTransport, TypingProtocol):
    """A bidirectional stream transport: what Protocol handlers write to."""


class DatagramTransport(BaseTransport, TypingProtocol):
    """A datagram endpoint: what DatagramProtocol handlers send with."""

    def sendto(self, data: bytes | bytearray | memoryview, addr: Address = None) -> None:
        """Send one datagram (to the connected peer if addr is None)."""
        ...

    def abort(self) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class Cancellable(TypingProtocol):
    def cancel(self) -> None: ...


class Scheduler(TypingProtocol):
    """Timers for handlers (timeouts, heartbeats) without importing the loop.

    The service wiring passes the loop in; any object with these methods works (a muxio
    Loop, an asyncio loop, `muxio.testing.FakeClock`-driven loops).
    """

    def time(self) -> float:
        """Seconds on the scheduler's monotonic clock."""
        ...

    def call_soon(self, callback: Callable[..., object], *args: object) -> Cancellable: ...

    def call_later(self, delay: float, callback: Callable[..., object],
                   *args: object) -> Cancellable: ...


ProtocolFactory = Callable[[], Protocol]
DatagramProtocolFactory = Callable[[], DatagramProtocol]
