"""An in-memory stream transport pair: two protocols joined by a fake link, no sockets.

    client_transport, server_transport = memory_pair(loop, client_protocol, server_protocol)

Bytes written on one side are delivered to the other side's `data_received` in a later
loop iteration (like a real network, never re-entrantly). Flow control is real: bytes
the peer has not consumed (because it paused reading) count toward the writer's buffer,
so `pause_writing`/`resume_writing` behave as on TCP. `write_eof`, `close` and `abort`
have TCP's semantics (abort shows up at the peer as ConnectionResetError).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from muxio.protocols import Protocol, Scheduler
from muxio.transports.flow import water_marks
from muxio.transports.lifecycle import TransportLifecycle


class MemoryTransport(TransportLifecycle):
    __slots__ = ("_peer", "_inbound", "_inbound_size", "_reading", "_eof_sent",
                 "_eof_delivered", "_delivery_scheduled", "_eof_received")

    _protocol: Protocol

    def __init__(self, scheduler: Scheduler, protocol: Protocol, name: str) -> None:
        self._init_lifecycle(scheduler, protocol, {"peername": name, "sockname": name,
                                                   "transport": "memory", "socket": None})
        self._peer: MemoryTransport | None = None
        self._inbound: deque[bytes] = deque()
        self._inbound_size = 0
        self._high_water, self._low_water = water_marks(None, None)
        self._writing_paused = False
        self._reading = True
        self._eof_sent = False  # we called write_eof (or close)
        self._eof_delivered = False  # the peer's EOF reached our protocol
        self._eof_received = False  # the peer's EOF is queued behind its data
        self._delivery_scheduled = False

    # -- reading -------------------------------------------------------------------------

    def _schedule_delivery(self) -> None:
        if not self._delivery_scheduled and not self._lost:
            self._delivery_scheduled = True
            self._scheduler.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._delivery_scheduled = False
        while self._inbound and self._reading and not self._lost:
            data = self._inbound.popleft()
            self._inbound_size -= len(data)
            try:
                self._protocol.data_received(data)
            except Exception as exc:
                self._protocol_failed(exc, "data_received")
                return
        if self._peer is not None:
            self._peer._maybe_resume()
        if (self._eof_received and not self._inbound and not self._eof_delivered
                and not self._lost and self._reading):
            self._eof_delivered = True
            self._reading = False
            try:
                keep_open = self._protocol.eof_received()
            except Exception as exc:
                self._protocol_failed(exc, "eof_received")
                return
            if not keep_open or self._eof_sent:
                self.close()

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._lost and not self._eof_delivered:
            self._reading = True
            self._schedule_delivery()

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_sent and not self._closing:
            raise RuntimeError("write() after write_eof(): the write side is shut down")
        if self._closing or self._lost or not data:
            return
        peer = self._peer
        if peer is None or peer._lost:
            return  # the peer is gone: like TCP after RST, data goes nowhere
        chunk = bytes(data)
        peer._inbound.append(chunk)
        peer._inbound_size += len(chunk)
        peer._schedule_delivery()
        self._maybe_pause()

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        if self._eof_sent or self._closing:
            return
        self._eof_sent = True
        self._send_eof()
        if self._eof_delivered:
            self.close()

    def _send_eof(self) -> None:
        peer = self._peer
        if peer is not None and not peer._lost:
            peer._eof_received = True
            peer._schedule_delivery()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        peer = self._peer
        return peer._inbound_size if peer is not None and not peer._lost else 0

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._reading = False
        if not self._eof_sent:
            self._eof_sent = True
            self._send_eof()
        self._lose(None)

    def _abort(self, exc: Exception | None) -> None:
        """Drop everything; the peer sees ConnectionResetError, as after a TCP RST."""
        if self._lost:
            return
        self._reading = False
        self._inbound.clear()
        self._inbound_size = 0
        peer = self._peer
        if peer is not None and not peer._lost:
            peer._inbound.clear()
            peer._inbound_size = 0
            peer._reading = False
            peer._lose(ConnectionResetError("the peer aborted the connection"))
        self._lose(exc)

    def __repr__(self) -> str:
        return f"<MemoryTransport {self._extra['sockname']} {self._state()}>"


def memory_pair(scheduler: Scheduler, client: Protocol,
                server: Protocol) -> tuple[MemoryTransport, MemoryTransport]:
    """Join two protocols; both get `connection_made` now (client first)."""
    client_side = MemoryTransport(scheduler, client, "client")
    server_side = MemoryTransport(scheduler, server, "server")
    client_side._peer, server_side._peer = server_side, client_side
    client_side._extra["peername"], server_side._extra["peername"] = "server", "client"
    client.connection_made(client_side)
    server.connection_made(server_side)
    return client_side, server_side
