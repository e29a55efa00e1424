"""KCP over UDP: many sessions on one port, each a stream Transport like TCP's.

Theory of operation
-------------------
Sessions. One UDP socket serves every session; a datagram is routed by (peer address,
conv). A datagram for an unknown pair opens a session only if it is a valid KCP PUSH of
sequence number 0 or a WASK (the first segment a peer ever sends), so stray or late
datagrams do not create sessions; recently closed pairs are remembered for a while and
ignored (and answered with a reset if we aborted them, so a peer whose reset datagram was
lost learns at its next datagram).

Admission (admission.py). Sources can be forged and KCP has no handshake, so a server
session starts *unproven*: it expires after `UNPROVEN_TIMEOUT` s of silence, it is the
first evicted when the table or its host's share (`max_sessions_per_address`) is full,
and it may draw at most `AMPLIFICATION_FACTOR` x the bytes it sent (datagrams past that are
dropped, KCP retransmits them later, and one window probe asks the peer to prove itself).
It becomes proven when the peer acknowledges our data or answers our probe (which also
lifts the amplification limit), or when a second datagram of it is accepted. Only a
datagram that the KCP core accepts counts as hearing from the peer.

Hostile segments. A PUSH longer than the MSS is refused and out-of-order data is capped in
bytes (`rcv_buf_limit`), so a session holds at most about two windows of payload.

Timing. KCP is driven event by event (ARCHITECTURE.md): after `input` and `send` the
session flushes at the end of the same loop iteration (`Loop.call_before_poll`, as TCP
sends its queued writes), so the handler's reply in that iteration carries the ACK: a
ping-pong costs 2 datagrams per round trip, as the C reference driven event-wise, not 4;
and the writes and ACKs of one iteration share datagrams. A loop timer is
set only while something waits to be sent or acknowledged, at the time the core's
`next_due()` names: the earliest retransmission (RTO with its backoff) or the next window
probe (ikcp's 7 s backoff to 120 s), never at the flush interval. Idle sessions cost no
timer at all. A segment sent `dead_link` times ends the session with `TimeoutError`.

Streams over messages. The core runs in message mode: each `write` becomes messages of
at most `MAX_MESSAGE` bytes, and an *empty* message marks end-of-stream (`write_eof`,
`close`). A plain ikcp peer in message mode interoperates as is. `abort` sends a reset
datagram (a 24-byte KCP header with cmd `CMD_RESET`, which a C peer ignores as an unknown
command) so the peer learns at once instead of waiting for its idle timeout.

Flow control. Reading paused = messages stay in KCP's receive queue, its advertised window
shrinks to 0 and the sender stops (KCP's own backpressure); resuming drains the queue and
the core announces the reopened window at once (WINS). Writing: bytes waiting in the send
queue and in flight count against the water marks (pause_writing / resume_writing).

Closing. `close` sends EOF after the data and waits until everything is acknowledged.
A session whose peer stops acknowledging (dead link: a segment sent `dead_link` times) or
that stays silent for `idle_timeout` seconds is closed with `TimeoutError`.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from collections.abc import Iterable
from typing import Any

from muxio.futures import Future
from muxio.loop import Loop, TimerHandle
from muxio.protocols import Protocol, ProtocolFactory
from muxio.transports.flow import water_marks
from muxio.transports.kcp import offload
from muxio.transports.kcp.admission import ExpiringKeys, SessionTable
from muxio.transports.kcp.core import FAST, Kcp, KcpProfile
from muxio.transports.lifecycle import TransportLifecycle
from muxio.transports.tcp import listen_addresses

log = logging.getLogger("muxio.kcp")

MAX_MESSAGE = 64 * 1024
"""Bytes per KCP message (48 fragments at the default MTU; the receive window is 128)."""
CMD_RESET = 0x60
"""Out-of-band 'reset' command of muxio's session layer (unknown to ikcp, so ignored)."""
_HEADER = struct.Struct("<IBBHIIII")
_CMD_PUSH = 81
_CMD_WASK = 83
_CMD_WINS = 84
_OPENING_COMMANDS = frozenset({_CMD_PUSH, _CMD_WASK})
"""A session opens on the first PUSH (sn 0) or on the WASK muxio's client sends at once."""
_MAX_DATAGRAM = 65535
_DATAGRAMS_PER_WAKEUP = 64
_RECENTLY_CLOSED_SECONDS = 30.0
UNPROVEN_TIMEOUT = 10.0
"""Seconds of silence after which a session that never proved a live peer is dropped."""
AMPLIFICATION_FACTOR = 3
"""An unproven peer draws at most this many bytes per byte it sent (as QUIC servers do)."""
_PROBE_REPEAT_SECONDS = 1.0
_RESET_REPEAT_SECONDS = 0.2
LINGER_SECONDS = 10.0
"""How long a locally closed session keeps ACKing a peer that has not sent its EOF."""
_CONNECT_ERRORS = (ConnectionRefusedError, ConnectionResetError)


def now_ms(loop: Loop) -> int:
    return int(loop.time() * 1000.0) & 0xFFFFFFFF


def _has_command(datagram: bytes, command: int) -> bool:
    """A segment of `command` is among the datagram's segments (headers walked)."""
    offset, size = 0, len(datagram)
    while size - offset >= _HEADER.size:
        if datagram[offset + 4] == command:
            return True
        offset += _HEADER.size + int.from_bytes(datagram[offset + 20:offset + 24], "little")
    return False


class KcpTransport(TransportLifecycle):
    """One KCP session: the Transport a stream Protocol gets, as on TCP."""

    __slots__ = ("_loop", "_endpoint", "_address", "_conv", "_kcp", "_timer", "_timer_at",
                 "_reading", "_eof_sent", "_eof_received",
                 "_idle_timeout", "_last_heard", "_idle_timer", "_close_when_acked",
                 "_gone", "_lingering", "proven", "_limited", "_budget", "_accepted",
                 "_probe_at", "_flush_pending", "_flush_callback")

    _protocol: Protocol

    def __init__(self, loop: Loop, endpoint: KcpEndpoint, address: Any, conv: int,  # noqa: PLR0917
                 protocol: Protocol, profile: KcpProfile, idle_timeout: float | None,
                 *, proven: bool = True) -> None:
        self._loop = loop
        self._endpoint = endpoint
        self._address = address
        self._conv = conv
        self._init_lifecycle(loop, protocol, {
            "peername": address, "sockname": endpoint.sock.getsockname(),
            "socket": endpoint.sock, "transport": "kcp", "backend": loop.backend,
            "conv": conv, "endpoint_statistics": endpoint.statistics})
        self._kcp = Kcp(conv, self._output)
        self._kcp.apply_profile(profile)
        self._kcp.max_segment = self._kcp.mss
        self._kcp.rcv_buf_limit = self._kcp.rcv_wnd * self._kcp.mss
        self._kcp.update(now_ms(loop))
        self.proven = proven
        """The peer showed it is live (see admission.py); a client's peer is chosen, so
        a client session starts proven."""
        self._limited = not proven  # the amplification limit applies
        self._budget = 0  # bytes an unproven peer may still draw
        self._accepted = 0  # datagrams the core accepted
        self._probe_at = float("-inf")
        self._flush_pending = False
        self._flush_callback = self._flush_now
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0
        self._high_water, self._low_water = water_marks(None, None)
        self._writing_paused = False
        self._reading = True
        self._eof_sent = False
        self._eof_received = False
        self._close_when_acked = False
        self._gone = False  # removed from the endpoint; datagrams are no longer routed here
        self._lingering = False  # closed locally, still ACKing the peer until its EOF
        self._idle_timeout = idle_timeout
        self._last_heard = loop.time()
        self._idle_timer: TimerHandle | None = None
        first_check = self._silence_allowed()
        if first_check is not None:
            self._idle_timer = loop.call_later(first_check, self._check_idle)

    def start(self) -> None:
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")

    # -- datagrams in --------------------------------------------------------------------

    def datagram_received(self, data: bytes) -> None:
        if self._gone:
            return
        kcp = self._kcp
        kcp.update(now_ms(self._loop))
        if not self._limited:
            if kcp.input(data) < 0:
                self._refused(data)
                return
        else:
            una, in_flight = kcp.snd_una, kcp.nsnd_buf
            if kcp.input(data) < 0:
                self._refused(data)
                return
            self._unproven_input(data, kcp.snd_una != una or kcp.nsnd_buf < in_flight)
        self._last_heard = self._loop.time()
        if self._lingering:
            self._linger_input()
            return
        if self._reading:
            self._deliver()
        # ACKs leave at the end of this loop iteration, with the handler's reply if it
        # wrote one (one datagram instead of two)
        self._schedule_flush()

    def _refused(self, data: bytes) -> None:
        self._endpoint.malformed_datagrams += 1
        log.debug("kcp %s conv %d: malformed datagram ignored (%d bytes)", self._address,
                  self._conv, len(data))

    def _unproven_input(self, data: bytes, acknowledged: bool) -> None:
        """An accepted datagram of a peer that has not acknowledged anything yet: earn
        budget, look for proof."""
        self._accepted += 1
        self._budget += AMPLIFICATION_FACTOR * len(data)
        if not acknowledged and self._probe_at > float("-inf"):
            acknowledged = _has_command(data, _CMD_WINS)  # the answer to our probe
        if acknowledged:
            self._limited = False
        if not self.proven and (acknowledged or self._accepted >= 2):
            self.proven = True
            self._endpoint.session_proven(self)

    def _linger_input(self) -> None:
        """Closed here: keep ACKing (and dropping) what the peer sends until its EOF."""
        kcp = self._kcp
        while (message := kcp.recv()) is not None:
            if not message:
                self._eof_received = True
        kcp.flush()
        if self._eof_received:
            self._teardown()

    def _deliver(self) -> None:
        kcp = self._kcp
        chunks: list[bytes] = []
        while self._reading and not self._lost:
            message = kcp.recv()
            if message is None:
                break
            if not message:
                if chunks:
                    self._data(b"".join(chunks))
                    chunks = []
                self._eof()
                break
            chunks.append(message)
            if len(chunks) >= 16:
                self._data(b"".join(chunks))
                chunks = []
        if chunks:
            self._data(b"".join(chunks))
        self._schedule_flush()  # a reopened receive window is announced (WINS)

    def _data(self, data: bytes) -> None:
        if self._lost:
            return
        try:
            self._protocol.data_received(data)
        except Exception as exc:
            self._protocol_failed(exc, "data_received")

    def _eof(self) -> None:
        self._eof_received = True
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
        if not self._reading and not self._lost and not self._eof_received:
            self._reading = True
            self._loop.call_soon(self._resume_delivery)

    def _resume_delivery(self) -> None:
        if self._reading and not self._lost:
            self._kcp.update(now_ms(self._loop))
            self._deliver()

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # -- datagrams out -------------------------------------------------------------------

    def _output(self, datagram: bytes) -> None:
        if self._limited:
            if len(datagram) > self._budget:
                self._over_budget()
                return
            self._budget -= len(datagram)
        self._endpoint.send_datagram(datagram, self._address)

    def _over_budget(self) -> None:
        """An unproven peer reached its amplification limit: the datagram is dropped (KCP
        retransmits it) and a window probe, at most once a second, asks the peer to
        answer: a live peer's WINS proves it and lifts the limit."""
        self._endpoint.amplification_drops += 1
        now = self._loop.time()
        if self._budget >= _HEADER.size and now - self._probe_at >= _PROBE_REPEAT_SECONDS:
            self._probe_at = now
            self._budget -= _HEADER.size
            self._send_probe()

    def _send_probe(self) -> None:
        window = max(0, self._kcp.rcv_wnd - self._kcp.nrcv_que)
        self._endpoint.send_datagram(
            _HEADER.pack(self._conv, _CMD_WASK, 0, window, 0, 0, self._kcp.rcv_nxt, 0),
            self._address)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_sent:
            if self._closing or self._lost:
                return
            raise RuntimeError("write() after write_eof(): the write side is shut down")
        if self._closing or self._lost or not data:
            return
        view = memoryview(data).cast("B")
        kcp = self._kcp
        kcp.update(now_ms(self._loop))
        for start in range(0, len(view), MAX_MESSAGE):
            kcp.send(bytes(view[start:start + MAX_MESSAGE]))
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_before_poll(self._flush_callback)
        self._maybe_pause()

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        if self._eof_sent or self._lost:
            return
        self._eof_sent = True
        kcp = self._kcp
        kcp.update(now_ms(self._loop))
        kcp.send(b"")  # an empty message is the end of the stream
        self._schedule_flush()
        if self._eof_received:
            self.close()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._kcp.waitsnd_bytes()

    # -- flushing and timers ---------------------------------------------------------------

    def _schedule_flush(self) -> None:
        """Flush at the end of this loop iteration (Loop.call_before_poll), once however
        many datagrams came in and writes were made: the handler's reply carries the
        ACKs, and small writes share datagrams."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_before_poll(self._flush_callback)

    def _flush_now(self) -> None:
        self._flush_pending = False
        if self._gone:
            return
        self._kcp.flush()
        self._after_progress()

    def _after_progress(self) -> None:
        """After input/send/timer: resume the writer, finish a close, rearm the timer."""
        if self._lost:
            return
        kcp = self._kcp
        if kcp.is_dead:
            self._connection_failed(TimeoutError(
                f"kcp peer {self._address} stopped acknowledging (dead link)"))
            return
        if self._writing_paused:
            self._maybe_resume()
        if kcp.waitsnd() == 0 and self._close_when_acked:
            self._finish_close()
            return
        due = kcp.next_due(now_ms(self._loop))
        if due is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        when = self._loop.time() + due / 1000.0
        if self._timer is None or when < self._timer_at - 0.0005:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._lost:
            return
        kcp = self._kcp
        kcp.update(now_ms(self._loop))
        kcp.flush()  # update() flushes only once per interval; a due timer always does
        self._after_progress()

    def _silence_allowed(self) -> float | None:
        """Seconds of silence after which the session is dropped (None: never)."""
        if self.proven:
            return self._idle_timeout
        if self._idle_timeout is None:
            return UNPROVEN_TIMEOUT
        return min(self._idle_timeout, UNPROVEN_TIMEOUT)

    def _check_idle(self) -> None:
        self._idle_timer = None
        allowed = self._silence_allowed()
        if self._lost or allowed is None:
            return
        silent = self._loop.time() - self._last_heard
        if silent >= allowed:
            what = "idle timeout" if self.proven else "never proved a live peer"
            self._connection_failed(TimeoutError(
                f"kcp peer {self._address} silent for {silent:.1f} s ({what})"))
        else:
            self._idle_timer = self._loop.call_later(allowed - silent, self._check_idle)

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._reading = False
        if not self._eof_sent:
            self._eof_sent = True
            self._kcp.update(now_ms(self._loop))
            self._kcp.send(b"")
        self._close_when_acked = True
        self._schedule_flush()

    def _finish_close(self) -> None:
        """Everything we sent is acknowledged: the protocol is done. Like TCP's TIME_WAIT,
        the session lingers (without its protocol) to ACK the peer until its EOF, unless
        the server has stopped (nothing is kept for a server that is going away)."""
        self._lose(None)
        if self._eof_received or self._endpoint.stopped:
            self._teardown()
            return
        self._lingering = True
        for timer in (self._timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._timer = None
        self._idle_timer = self._loop.call_later(LINGER_SECONDS, self._teardown)
        self._linger_input()

    def _abort(self, exc: Exception | None) -> None:
        """Close now: a reset datagram tells the peer at once."""
        if self._lost:
            if self._lingering:
                self._teardown()
            return
        self._endpoint.send_reset(self._address, self._conv)
        self._endpoint.aborted(self)
        self._teardown()
        self._lose(exc)

    def evict(self) -> None:
        """Make room in a full table (an unproven session): reset, then gone."""
        if self._limited and self._budget < _HEADER.size:
            self._endpoint.aborted(self)  # no budget for a reset now; answered later
        else:
            self._budget -= _HEADER.size
            self._endpoint.send_reset(self._address, self._conv)
            self._endpoint.aborted(self)
        self._teardown()
        self._lose(ConnectionAbortedError(
            f"kcp session of {self._address} evicted: the session table was full and the "
            f"peer had not proved itself live"))

    def announce(self) -> None:
        """Send a window probe (WASK) so that the peer opens its side of the session."""
        window = max(0, self._kcp.rcv_wnd - self._kcp.nrcv_que)
        self._endpoint.send_datagram(
            _HEADER.pack(self._conv, _CMD_WASK, 0, window, 0, 0, 0, 0), self._address)

    def reset_received(self) -> None:
        """The peer aborted (CMD_RESET)."""
        if self._lingering:
            self._teardown()
            return
        self._connection_failed(ConnectionResetError(f"kcp peer {self._address} reset "
                                                     f"the session"))

    def _connection_failed(self, exc: Exception) -> None:
        if self._lost:
            return
        log.debug("kcp %s conv %d: %s", self._address, self._conv, exc)
        self._endpoint.aborted(self)
        self._teardown()
        self._lose(exc)

    def _teardown(self) -> None:
        """Leave the endpoint: no more datagrams, no timers."""
        if self._gone:
            return
        self._gone = True
        self._reading = False
        for timer in (self._timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._idle_timer = None
        self._endpoint.forget(self)

    # -- info ----------------------------------------------------------------------------

    @property
    def key(self) -> tuple[Any, int]:
        return self._address, self._conv

    def statistics(self) -> dict[str, int]:
        kcp = self._kcp
        return {"waitsnd": kcp.waitsnd(), "waitsnd_bytes": kcp.waitsnd_bytes(),
                "retransmissions": kcp.xmit, "rcv_buf_bytes": kcp.rcv_buf_bytes,
                "proven": int(self.proven)}

    def __repr__(self) -> str:
        return f"<KcpTransport {self._address} conv={self._conv}>"


class KcpEndpoint:
    """One UDP socket and the KCP sessions it carries (server: many; client: one)."""

    def __init__(self, loop: Loop, sock: socket.socket, *, profile: KcpProfile,
                 protocol_factory: ProtocolFactory | None, idle_timeout: float | None,
                 max_sessions: int, max_sessions_per_address: int | None = None,
                 udp_offload: bool = True) -> None:
        self._loop = loop
        self.sock = sock
        self._profile = profile
        self._protocol_factory = protocol_factory
        self._idle_timeout = idle_timeout
        self.table: SessionTable[KcpTransport] = SessionTable(
            max_sessions, max_sessions_per_address or max_sessions, loop.time)
        self.sessions: dict[tuple[Any, int], KcpTransport] = {}
        capacity = max(1024, 2 * max_sessions)
        self.recently_closed: ExpiringKeys[tuple[Any, int]] = ExpiringKeys(
            _RECENTLY_CLOSED_SECONDS, capacity, loop.time)
        """(address, conv) pairs closed lately: their late datagrams open nothing."""
        self.recently_aborted: ExpiringKeys[tuple[Any, int]] = ExpiringKeys(
            _RECENTLY_CLOSED_SECONDS, capacity, loop.time)
        """Pairs we aborted lately: their datagrams are answered with a reset."""
        self._resets_repeated: ExpiringKeys[tuple[Any, int]] = ExpiringKeys(
            _RESET_REPEAT_SECONDS, capacity, loop.time)
        self._fd = sock.fileno()
        self._closing = False  # close() has begun (re-entrant calls return at once)
        self.stopped = False
        """A server endpoint told to stop: sessions that finish do not linger."""
        self._closed = False  # the socket is closed
        self._edge = loop.edge_triggered
        self.dropped_datagrams = 0
        """Datagrams routed to no session (strays, refused or late openings)."""
        self.malformed_datagrams = 0
        """Datagrams of a session that its KCP core refused."""
        self.amplification_drops = 0
        """Datagrams not sent to an unproven peer that had used up its budget."""
        self.resets_answered = 0
        self.datagrams_sent = 0
        self.datagrams_received = 0
        # UDP GSO/GRO where the kernel offers them (offload.py); else as plain UDP
        self.gso = udp_offload and offload.enable_gso(sock)
        self.gro = udp_offload and offload.enable_gro(sock)
        self.gso_sends = 0
        self.gro_receives = 0
        self._pending: list[tuple[bytes, Any]] = []
        self._pending_scheduled = False
        loop.add_reader(sock.fileno(), self._read_ready_gro if self.gro else self._read_ready)

    def statistics(self) -> dict[str, int]:
        table = self.table
        return {"datagrams_sent": self.datagrams_sent,
                "datagrams_received": self.datagrams_received,
                "sessions": len(self.sessions), "unproven_sessions": table.unproven,
                "refused_sessions": table.refused, "evicted_sessions": table.evicted,
                "dropped_datagrams": self.dropped_datagrams,
                "malformed_datagrams": self.malformed_datagrams,
                "amplification_drops": self.amplification_drops,
                "resets_answered": self.resets_answered,
                "gso": int(self.gso), "gso_sends": self.gso_sends,
                "gro": int(self.gro), "gro_receives": self.gro_receives,
                "recently_closed": len(self.recently_closed)}

    @property
    def connections(self) -> set[KcpTransport]:
        """Live sessions (not those lingering after a local close)."""
        return {session for session in self.sessions.values() if not session._lingering}

    @property
    def accepting(self) -> bool:
        """New sessions are opened (a server that has not been closed)."""
        return self._protocol_factory is not None

    def stop_accepting(self) -> None:
        """No new sessions; lingering ones are dropped (and later ones do not linger);
        the socket closes when no live session needs it any more."""
        self._protocol_factory = None
        self.stopped = True
        for session in list(self.sessions.values()):
            if session._lingering:
                session._teardown()
        if not self.sessions:
            self.close()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _read_ready(self) -> None:
        if self._closing:
            return  # an edge-triggered continuation scheduled before the close
        recvfrom = self.sock.recvfrom
        for _ in range(_DATAGRAMS_PER_WAKEUP):
            try:
                data, address = recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except _CONNECT_ERRORS as exc:
                # ICMP port unreachable on a connected client socket.
                for session in list(self.sessions.values()):
                    session._connection_failed(exc)
                return
            except OSError as exc:
                log.warning("kcp endpoint recv failed: %r", exc)
                return
            self.datagrams_received += 1
            self._route(data, address)
            if self._closed:
                return
        if self._edge:
            self._loop.call_soon(self._read_ready)

    def _read_ready_gro(self) -> None:
        """`_read_ready` with UDP_GRO on: one receive may hold several datagrams of one
        peer glued together; the kernel says their size."""
        if self._closing:
            return  # an edge-triggered continuation scheduled before the close
        recvmsg = self.sock.recvmsg
        segment_size = offload.gro_segment_size
        for _ in range(_DATAGRAMS_PER_WAKEUP):
            try:
                data, ancillary, _flags, address = recvmsg(_MAX_DATAGRAM,
                                                           offload.GRO_CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except _CONNECT_ERRORS as exc:
                for session in list(self.sessions.values()):
                    session._connection_failed(exc)
                return
            except OSError as exc:
                log.warning("kcp endpoint recv failed: %r", exc)
                return
            size = segment_size(ancillary) if ancillary else 0
            if size and len(data) > size:
                self.gro_receives += 1
                for start in range(0, len(data), size):
                    self.datagrams_received += 1
                    self._route(data[start:start + size], address)
                    if self._closed:
                        return
            else:
                self.datagrams_received += 1
                self._route(data, address)
            if self._closed:
                return
        if self._edge:
            self._loop.call_soon(self._read_ready_gro)

    def _route(self, data: bytes, address: Any) -> None:
        if len(data) < _HEADER.size:
            self.dropped_datagrams += 1
            return
        conv, cmd, _frg, _wnd, _ts, sn, una, _length = _HEADER.unpack_from(data)
        key = (address, conv)
        session = self.sessions.get(key)
        if session is not None:
            if cmd == CMD_RESET:
                session.reset_received()
            else:
                session.datagram_received(data)
            return
        if key in self.recently_closed:
            self.dropped_datagrams += 1
            if (cmd != CMD_RESET and key in self.recently_aborted
                    and key not in self._resets_repeated):
                # Our reset may have been lost: say it again, at most once per
                # _RESET_REPEAT_SECONDS per session (a peer's whole window of datagrams
                # in flight draws one reset, not one each; never larger than the datagram
                # that asked, so no amplification).
                self._resets_repeated.add(key)
                self.resets_answered += 1
                self.send_reset(address, conv)
            return
        if (self._protocol_factory is None or cmd not in _OPENING_COMMANDS or sn != 0
                or una != 0):
            self.dropped_datagrams += 1
            return
        if not self.table.admit(address):
            self.dropped_datagrams += 1
            return
        try:
            protocol = self._protocol_factory()
        except Exception as exc:
            self._loop.call_exception_handler({
                "message": "protocol factory failed; kcp session refused", "exception": exc})
            return
        session = self.open_session(address, conv, protocol, proven=False)
        session.datagram_received(data)

    def open_session(self, address: Any, conv: int, protocol: Protocol, *,
                     proven: bool = True) -> KcpTransport:
        session = KcpTransport(self._loop, self, address, conv, protocol, self._profile,
                               self._idle_timeout, proven=proven)
        self.sessions[session.key] = session
        self.table.added(session, address)
        if proven:
            self.table.proven(session)
        session.start()
        return session

    def session_proven(self, session: KcpTransport) -> None:
        self.table.proven(session)

    def aborted(self, session: KcpTransport) -> None:
        """`session` ended abnormally here: later datagrams of it get a reset."""
        self.recently_aborted.add(session.key)

    def send_reset(self, address: Any, conv: int) -> None:
        self.send_datagram(_HEADER.pack(conv, CMD_RESET, 0, 0, 0, 0, 0, 0), address)

    def send_datagram(self, datagram: bytes, address: Any) -> None:
        if self._closed:
            return
        if self.gso:
            # sent with the iteration's other datagrams, right before the next poll
            self._pending.append((datagram, address))
            if not self._pending_scheduled:
                self._pending_scheduled = True
                self._loop.call_before_poll(self._send_pending)
            return
        self._sendto(datagram, address)

    def _send_pending(self) -> None:
        """Send the queued datagrams: each run of equal-size datagrams to one address in
        one GSO sendmsg, a lone datagram with sendto."""
        self._pending_scheduled = False
        pending, self._pending = self._pending, []
        if self._closed:
            return
        for address, run in offload.gso_runs(pending):
            if len(run) == 1 or not self.gso:
                for datagram in run:
                    self._sendto(datagram, address)
                continue
            try:
                offload.send_run(self.sock, run, address)
            except (BlockingIOError, InterruptedError):
                self.dropped_datagrams += len(run)  # UDP: KCP will retransmit
                continue
            except OSError as exc:
                if exc.errno in offload.GSO_FAILURES:
                    log.info("kcp: UDP GSO refused on this route (%s); sending datagrams "
                             "one by one", exc.strerror)
                    self.gso = False
                    for datagram in run:
                        self._sendto(datagram, address)
                elif exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                       errno.ENETUNREACH):
                    log.warning("kcp send to %s failed: %r", address, exc)
                continue
            self.gso_sends += 1
            self.datagrams_sent += len(run)

    def _sendto(self, datagram: bytes, address: Any) -> None:
        try:
            self.sock.sendto(datagram, address)
            self.datagrams_sent += 1
        except (BlockingIOError, InterruptedError):
            self.dropped_datagrams += 1  # UDP: KCP will retransmit
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                log.warning("kcp send to %s failed: %r", address, exc)

    def forget(self, session: KcpTransport) -> None:
        if self.sessions.pop(session.key, None) is not None:
            self.table.removed(session)
            self.recently_closed.add(session.key)
        if self._protocol_factory is None and not self.sessions:
            self.close()  # a client endpoint lives as long as its one session

    def close(self) -> None:
        """Stop receiving; sessions still open are aborted (their peers get a reset).
        Idempotent and re-entrant: the last aborted session's `forget` calls it again."""
        if self._closing:
            return
        self._closing = True
        self._protocol_factory = None
        self.stopped = True
        for session in list(self.sessions.values()):
            session.abort()
        if self._pending:
            self._send_pending()  # the resets just queued go out before the socket closes
        self._closed = True
        if not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self.sock.close()


class KcpServer:
    """KCP sessions accepted on UDP sockets (one per address family for 'localhost')."""

    def __init__(self, endpoints: list[KcpEndpoint]) -> None:
        self.endpoints = endpoints

    @property
    def port(self) -> int:
        return self.endpoints[0].port

    @property
    def sockets(self) -> list[socket.socket]:
        return [endpoint.sock for endpoint in self.endpoints]

    @property
    def connections(self) -> set[KcpTransport]:
        return {session for endpoint in self.endpoints for session in endpoint.connections}

    def close(self) -> None:
        """Stop accepting new sessions; established ones go on (see close_clients), and
        each socket closes once its last session is gone. Idempotent."""
        for endpoint in self.endpoints:
            endpoint.stop_accepting()

    def close_clients(self) -> None:
        for session in list(self.connections):
            session.close()

    def abort_clients(self) -> None:
        """Abort every session; once closed, the server's sockets close with the last."""
        for session in list(self.connections):
            session.abort()

    def is_serving(self) -> bool:
        return any(endpoint.accepting for endpoint in self.endpoints)


def _udp_socket(family: int, rcvbuf: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
    except OSError:
        pass
    return sock


def serve(protocol_factory: ProtocolFactory, host: str | None = "127.0.0.1", port: int = 0,
          *, loop: Loop, profile: KcpProfile = FAST, idle_timeout: float | None = 120.0,
          max_sessions: int = 10000, max_sessions_per_address: int = 256,
          rcvbuf: int = 4 * 1024 * 1024, udp_offload: bool = True,
          reuse_port: bool = False) -> KcpServer:
    """Accept KCP sessions on UDP `host:port` ('localhost' = 127.0.0.1 and ::1).

    At most `max_sessions` per socket and `max_sessions_per_address` per source IP; when
    either is reached, the oldest session that never proved a live peer is evicted for a
    newcomer, else the newcomer is refused (see admission.py).

    `reuse_port` sets SO_REUSEPORT, so that several processes serve one port: the kernel
    picks a socket by a hash of the datagram's 4-tuple, so every datagram of one peer
    address reaches the same process (and its session) while the set of sockets does not
    change."""
    endpoints: list[KcpEndpoint] = []
    try:
        for family, address in listen_addresses(host, port, socket.SOCK_DGRAM):
            sock = _udp_socket(family, rcvbuf)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                if port == 0 and endpoints:
                    sock.bind((address[0], endpoints[0].port, *address[2:]))
                else:
                    sock.bind(address)
            except OSError:
                sock.close()
                raise
            endpoints.append(KcpEndpoint(loop, sock, profile=profile,
                                         protocol_factory=protocol_factory,
                                         idle_timeout=idle_timeout, max_sessions=max_sessions,
                                         max_sessions_per_address=max_sessions_per_address,
                                         udp_offload=udp_offload))
    except OSError:
        for endpoint in endpoints:
            endpoint.close()
        raise
    return KcpServer(endpoints)


def connect(protocol_factory: ProtocolFactory, host: str, port: int, *, loop: Loop,
            conv: int | None = None, profile: KcpProfile = FAST,
            idle_timeout: float | None = 120.0, rcvbuf: int = 4 * 1024 * 1024,
            udp_offload: bool = True) -> Future[tuple[KcpTransport, Protocol]]:
    """Open a KCP session to `host:port`. KCP has no handshake: the future completes at
    once; an unreachable peer shows up later as connection_lost(ConnectionRefusedError)
    (ICMP) or TimeoutError (dead link / idle timeout)."""
    future: Future[tuple[KcpTransport, Protocol]] = Future(loop)
    try:
        family, _kind, _proto, _name, address = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM)[0]
        sock = _udp_socket(family, rcvbuf)
        sock.connect(address)
    except OSError as exc:
        future.set_exception(exc)
        return future
    endpoint = KcpEndpoint(loop, sock, profile=profile, protocol_factory=None,
                           idle_timeout=idle_timeout, max_sessions=1,
                           udp_offload=udp_offload)
    if conv is None:
        conv = int.from_bytes(os.urandom(4), "little") or 1
    protocol = protocol_factory()

    def open_session() -> None:
        session = endpoint.open_session(sock.getpeername(), conv, protocol)
        # KCP has no handshake: a window probe lets the server open the session (and
        # answer WINS) before we send data, and an unreachable port shows up as ICMP.
        session.announce()
        future.set_result((session, protocol))

    loop.call_soon(open_session)
    return future


