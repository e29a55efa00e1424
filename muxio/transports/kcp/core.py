"""A sans-I/O KCP control block, wire- and behaviour-compatible with the C reference (ikcp).

Theory of operation
-------------------
KCP is an ARQ protocol: it turns an unreliable datagram service into a reliable, ordered one.
This module does no I/O and reads no clock. The caller feeds it three things:

* ``send(data)`` queues a message (message mode: split into at most 127 fragments of ``mss``
  bytes; stream mode: bytes are coalesced into full segments);
* ``input(datagram)`` hands it a datagram that arrived from the peer;
* ``update(now_ms)`` / ``flush()`` give it the time and let it transmit.

Everything that must go on the wire leaves through ``flush``: pending ACKs first, then window
probes (WASK/WINS), then data segments (new ones as the window allows, timed-out ones, and fast
retransmissions). Segments are packed back to back into datagrams of at most ``mtu`` bytes and
handed to the output callback (or appended to ``outbox`` when there is none).

Four queues hold segments, as in the reference: ``snd_queue`` (accepted, no sequence number
yet), ``snd_buf`` (in flight, keyed by sn, ascending), ``rcv_buf`` (arrived out of order,
keyed by sn) and ``rcv_queue`` (in order, ready for ``recv``). Every PUSH carries ``una``
(the receiver's next expected sn: a cumulative ACK); every PUSH is also acknowledged by a
selective ACK carrying the sn and echoing the PUSH's timestamp, which yields an RTT sample.
ACKs that skip over a segment count as "fast acks" for it; ``fastresend`` of them trigger a
retransmission before the timeout. A segment sent ``dead_link`` times marks the link dead
(``state``/``is_dead``); KCP itself keeps going, the application decides.

Sequence numbers and timestamps are unsigned 32-bit and compared modulo 2**32: every stored
value is masked with ``& 0xFFFFFFFF`` and ``a < b`` means ``(a - b) mod 2**32 >= 2**31``.
The arithmetic that the reference does in 32-bit integers (RTT estimation, RTO backoff,
congestion window) is reproduced with the same wraparound, so the same calls with the same
clock produce byte-identical datagrams (the baseline is the final "v1" ikcp.c, with
FASTACK_CONSERVE, where ``send`` returns the byte count).

Hot paths (``input``, ``flush``, ``recv``) keep state in locals, parse headers with one
``struct.Struct`` and look segments up in dicts keyed by sequence number instead of walking
lists. Received payloads are stored as ``(frg, bytes)`` tuples, so an unfragmented message is
returned by ``recv`` without a copy. ``flush`` remembers, from its last full walk over
``snd_buf``, how long no in-flight segment can time out and whether any may be fast-resent;
until then it only looks at the segments it has just moved into flight (which the reference
would send, and only those), so a flush after every ACK does not cost a walk over the window.
"""

# Hot paths compare with `if` instead of calling min()/max(): it is measurably faster.
# ruff: noqa: PLR1730

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CMD_ACK",
    "CMD_PUSH",
    "CMD_WASK",
    "CMD_WINS",
    "DEFAULT",
    "EXTREME",
    "FAST",
    "NORMAL",
    "OVERHEAD",
    "PROFILES",
    "TURBO",
    "Kcp",
    "KcpError",
    "KcpProfile",
    "getconv",
]

# -- protocol constants (ikcp.c) ------------------------------------------------------------

OVERHEAD: Final = 24
CMD_PUSH: Final = 81
CMD_ACK: Final = 82
CMD_WASK: Final = 83
CMD_WINS: Final = 84
ASK_SEND: Final = 1
ASK_TELL: Final = 2

RTO_NDL: Final = 30
RTO_MIN: Final = 100
RTO_DEF: Final = 200
RTO_MAX: Final = 60000
WND_SND: Final = 32
WND_RCV: Final = 128
MTU_DEF: Final = 1400
MTU_MIN: Final = 50
INTERVAL: Final = 100
DEADLINK: Final = 20
THRESH_INIT: Final = 2
THRESH_MIN: Final = 2
PROBE_INIT: Final = 7000
PROBE_LIMIT: Final = 120000
FASTACK_LIMIT: Final = 5
MAX_FRAGMENTS: Final = WND_RCV - 1  # a message needing WND_RCV fragments is refused

STATE_DEAD: Final = 0xFFFFFFFF

_M: Final = 0xFFFFFFFF
_HALF: Final = 0x80000000

HEADER: Final = struct.Struct("<IBBHIIII")
_pack = HEADER.pack
_unpack_from = HEADER.unpack_from
_conv_struct = struct.Struct("<I")


class KcpError(ValueError):
    """Misuse of the KCP API (invalid MTU, window, conversation id, profile...)."""


def getconv(datagram: bytes | bytearray | memoryview) -> int:
    """The conversation id of a datagram (its first 4 bytes, little-endian).

    Use it to route a datagram to its session before ``Kcp.input``. Raises ``KcpError`` when
    the datagram is shorter than 4 bytes.
    """
    if len(datagram) < 4:
        raise KcpError(f"a KCP datagram has at least 4 bytes, got {len(datagram)}")
    conv: int = _conv_struct.unpack_from(datagram, 0)[0]
    return conv


def _s32(value: int) -> int:
    """Reinterpret the low 32 bits of ``value`` as a signed 32-bit integer."""
    return ((value + _HALF) & _M) - _HALF


def _div_trunc(value: int, divisor: int) -> int:
    """C integer division (truncates toward zero) for a positive divisor."""
    if value >= 0:
        return value // divisor
    return -((-value) // divisor)


# -- profiles -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KcpProfile:
    """A named set of tuning knobs, applied with ``Kcp.apply_profile``.

    ``nodelay``, ``interval``, ``resend`` and ``nc`` are the arguments of ``Kcp.nodelay``;
    ``rx_minrto`` (when not None) overrides the minimum RTO that ``nodelay`` selects.
    """

    name: str
    nodelay: int = 0
    interval: int = INTERVAL
    resend: int = 0
    nc: int = 0
    snd_wnd: int = WND_SND
    rcv_wnd: int = WND_RCV
    mtu: int = MTU_DEF
    rx_minrto: int | None = None
    fastlimit: int = FASTACK_LIMIT
    dead_link: int = DEADLINK

    def __post_init__(self) -> None:
        if self.nodelay < 0 or self.resend < 0 or self.nc not in (0, 1):
            raise KcpError(f"profile {self.name!r}: nodelay/resend must be >= 0, nc 0 or 1")
        if not 10 <= self.interval <= 5000:
            raise KcpError(f"profile {self.name!r}: interval must be in [10, 5000] ms")
        if self.snd_wnd <= 0 or self.rcv_wnd <= 0:
            raise KcpError(f"profile {self.name!r}: windows must be positive")
        if self.mtu < MTU_MIN:
            raise KcpError(f"profile {self.name!r}: mtu must be >= {MTU_MIN}")
        if self.rx_minrto is not None and not 0 <= self.rx_minrto <= RTO_MAX:
            raise KcpError(f"profile {self.name!r}: rx_minrto must be in [0, {RTO_MAX}]")
        if self.dead_link <= 0:
            raise KcpError(f"profile {self.name!r}: dead_link must be positive")


#: ikcp's defaults: nodelay off, 100 ms interval, no fast resend, congestion control on.
DEFAULT: Final = KcpProfile("default")
#: The README's "normal mode": ``nodelay(0, 40, 0, 0)``.
NORMAL: Final = KcpProfile("normal", 0, 40, 0, 0)
#: The README's "fast"/"turbo" mode: ``nodelay(1, 10, 2, 1)`` with 128/128 windows.
FAST: Final = KcpProfile("fast", 1, 10, 2, 1, snd_wnd=128, rcv_wnd=128)
TURBO: Final = FAST
#: The upstream test's fastest setting: ``nodelay(2, 10, 1, 1)``, ``rx_minrto = 10``.
EXTREME: Final = KcpProfile("extreme", 2, 10, 1, 1, snd_wnd=128, rcv_wnd=128, rx_minrto=10)

PROFILES: Final[dict[str, KcpProfile]] = {
    p.name: p for p in (DEFAULT, NORMAL, FAST, EXTREME)
} | {"turbo": TURBO}


# -- segments -------------------------------------------------------------------------------


class _Segment:
    """An outgoing segment (snd_queue / snd_buf). Received ones are ``(frg, data)`` tuples."""

    __slots__ = ("data", "fastack", "frg", "resendts", "rto", "sn", "ts", "xmit")

    def __init__(self, frg: int, data: bytes) -> None:
        self.frg = frg
        self.data = data
        # sn, ts, resendts, rto, fastack, xmit are set when flush moves it to snd_buf
        self.sn = 0
        self.ts = 0
        self.resendts = 0
        self.rto = 0
        self.fastack = 0
        self.xmit = 0


Output = Callable[[bytes], object]


class Kcp:
    """One KCP control block (``ikcpcb``): the reference's state machine, in Python.

    Fields named as in ``struct IKCPCB`` may be read, and the ones the reference lets users
    set directly (``rx_minrto``, ``fastresend``, ``fastlimit``, ``dead_link``, ``stream``,
    ``nocwnd``, windows, ...) may be written. ``snd_una``/``snd_nxt``/``rcv_nxt`` may be set
    only while nothing is queued or in flight (e.g. to start near the 2**32 wrap).
    """

    __slots__ = (
        "_acklist",
        "_emit",
        "_fastlimit",
        "_fastresend",
        "_rescan",
        "_scan_time",
        "_scan_wait",
        "_rcv_buf",
        "_rcv_queue",
        "_snd_buf",
        "_snd_buf_bytes",
        "_snd_queue",
        "_snd_queue_bytes",
        "conv",
        "current",
        "cwnd",
        "dead_link",
        "incr",
        "interval",
        "max_segment",
        "mss",
        "mtu",
        "nocwnd",
        "nodelay_mode",
        "outbox",
        "output",
        "probe",
        "probe_wait",
        "rcv_buf_bytes",
        "rcv_buf_limit",
        "rcv_nxt",
        "rcv_wnd",
        "rmt_wnd",
        "rx_minrto",
        "rx_rto",
        "rx_rttval",
        "rx_srtt",
        "snd_nxt",
        "snd_una",
        "snd_wnd",
        "ssthresh",
        "state",
        "stream",
        "ts_flush",
        "ts_probe",
        "updated",
        "xmit",
    )

    def __init__(self, conv: int, output: Output | None = None, *,
                 profile: KcpProfile | None = None, stream: bool = False) -> None:
        if not 0 <= conv <= _M:
            raise KcpError(f"conv must be an unsigned 32-bit integer, got {conv}")
        self.conv = conv
        self.output: Output | None = output
        #: datagrams produced while no output callback is set (see ``drain_output``)
        self.outbox: list[bytes] = []
        self._emit: Output = output if output is not None else self.outbox.append
        self.mtu = MTU_DEF
        self.mss = MTU_DEF - OVERHEAD
        self.state = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.rcv_nxt = 0
        self.ssthresh = THRESH_INIT
        self.rx_rttval = 0
        self.rx_srtt = 0
        self.rx_rto = RTO_DEF
        self.rx_minrto = RTO_MIN
        self.snd_wnd = WND_SND
        self.rcv_wnd = WND_RCV
        self.rmt_wnd = WND_RCV
        self.cwnd = 0
        self.incr = 0
        self.probe = 0
        self.current = 0
        self.interval = INTERVAL
        self.ts_flush = INTERVAL
        self.xmit = 0
        self.nodelay_mode = 0
        self.updated = 0
        self.ts_probe = 0
        self.probe_wait = 0
        self.dead_link = DEADLINK
        self._fastresend = 0
        self._fastlimit = FASTACK_LIMIT
        # flush's shortcut (see _flush_data): no segment in snd_buf times out before
        # _scan_time + _scan_wait, and no fast retransmission is possible unless _rescan
        self._scan_time = 0
        self._scan_wait = 0
        self._rescan = True
        self.nocwnd = 0
        self.stream = 1 if stream else 0
        self._snd_queue: deque[_Segment] = deque()
        self._snd_buf: dict[int, _Segment] = {}
        self._snd_queue_bytes = 0  # payload bytes in snd_queue / snd_buf (waitsnd_bytes)
        self._snd_buf_bytes = 0
        #: PUSH segments longer than this are refused (``input`` returns -4); the reference
        #: accepts any length, a server sets it to its ``mss`` (see transport.py)
        self.max_segment = _M
        #: bytes of out-of-order payload ``rcv_buf`` may hold; a segment that would pass it
        #: is dropped unacknowledged (the sender retransmits it). Unlimited by default.
        self.rcv_buf_limit = _M
        self.rcv_buf_bytes = 0
        self._rcv_buf: dict[int, tuple[int, bytes]] = {}
        self._rcv_queue: deque[tuple[int, bytes]] = deque()
        self._acklist: list[int] = []  # sn, ts, sn, ts, ...
        if profile is not None:
            self.apply_profile(profile)

    # -- configuration ------------------------------------------------------------------

    def set_output(self, output: Output | None) -> None:
        """Route datagrams to ``output``, or to ``outbox`` when None."""
        self.output = output
        self._emit = output if output is not None else self.outbox.append

    def drain_output(self) -> list[bytes]:
        """Return and forget the datagrams collected in ``outbox``."""
        out = self.outbox[:]
        self.outbox.clear()
        return out

    def nodelay(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        """``ikcp_nodelay``: a negative argument leaves that setting unchanged."""
        if nodelay >= 0:
            self.nodelay_mode = nodelay
            self.rx_minrto = RTO_NDL if nodelay else RTO_MIN
        if interval >= 0:
            self.set_interval(interval)
        if resend >= 0:
            self.fastresend = resend
        if nc >= 0:
            self.nocwnd = nc

    def set_interval(self, interval: int) -> None:
        """``ikcp_interval``: the flush period, clamped to [10, 5000] ms."""
        self.interval = min(max(interval, 10), 5000)

    def wndsize(self, snd_wnd: int = 0, rcv_wnd: int = 0) -> None:
        """``ikcp_wndsize``: values > 0 apply; the receive window is at least 128."""
        if snd_wnd > 0:
            self.snd_wnd = snd_wnd
        if rcv_wnd > 0:
            self.rcv_wnd = max(rcv_wnd, WND_RCV)

    def setmtu(self, mtu: int) -> None:
        """``ikcp_setmtu``: datagram size limit; ``mss = mtu - 24``. Raises KcpError < 50."""
        if mtu < MTU_MIN:
            raise KcpError(f"mtu must be >= {MTU_MIN}, got {mtu}")
        self.mtu = mtu
        self.mss = mtu - OVERHEAD

    def apply_profile(self, profile: KcpProfile) -> None:
        """Apply a named profile's nodelay settings, windows, MTU and limits."""
        self.nodelay(profile.nodelay, profile.interval, profile.resend, profile.nc)
        self.wndsize(profile.snd_wnd, profile.rcv_wnd)
        if profile.mtu != self.mtu:
            self.setmtu(profile.mtu)
        if profile.rx_minrto is not None:
            self.rx_minrto = profile.rx_minrto
        self.fastlimit = profile.fastlimit
        self.dead_link = profile.dead_link

    @property
    def fastresend(self) -> int:
        """Fast-retransmit threshold: resend after this many skipping ACKs (0 = off)."""
        return self._fastresend

    @fastresend.setter
    def fastresend(self, value: int) -> None:
        self._fastresend = value
        self._rescan = True

    @property
    def fastlimit(self) -> int:
        """A segment is fast-retransmitted only while sent at most this often (<= 0: always)."""
        return self._fastlimit

    @fastlimit.setter
    def fastlimit(self, value: int) -> None:
        self._fastlimit = value
        self._rescan = True

    # -- introspection ------------------------------------------------------------------

    @property
    def nsnd_que(self) -> int:
        return len(self._snd_queue)

    @property
    def nsnd_buf(self) -> int:
        return len(self._snd_buf)

    @property
    def nrcv_que(self) -> int:
        return len(self._rcv_queue)

    @property
    def nrcv_buf(self) -> int:
        return len(self._rcv_buf)

    @property
    def ackcount(self) -> int:
        return len(self._acklist) >> 1

    @property
    def is_dead(self) -> bool:
        """True once a segment has been transmitted ``dead_link`` times."""
        return self.state == STATE_DEAD

    def waitsnd(self) -> int:
        """Segments not yet acknowledged: queued plus in flight."""
        return len(self._snd_buf) + len(self._snd_queue)

    def waitsnd_bytes(self) -> int:
        """Payload bytes not yet acknowledged: queued plus in flight."""
        return self._snd_queue_bytes + self._snd_buf_bytes

    def next_due(self, now_ms: int) -> int | None:
        """Milliseconds until ``flush`` has timed work: the earliest retransmission, or the
        next window probe while the peer's window is closed and data waits; 0 if now;
        None if nothing is timed (no data waiting). Unlike ``check`` it ignores the flush
        interval: a driver that flushes after every ``input``/``send`` needs no periodic
        wake-up, only these (the per-session timer of the transport)."""
        current = now_ms & _M
        if self._acklist or self.probe:
            return 0
        earliest = None
        for seg in self._snd_buf.values():
            diff = _s32(seg.resendts - current)
            if diff <= 0:
                return 0
            if earliest is None or diff < earliest:
                earliest = diff
        if self.rmt_wnd == 0 and (self._snd_queue or self._snd_buf):
            if self.probe_wait == 0:
                return 0  # the next flush starts the probe backoff
            diff = _s32(self.ts_probe - current)
            if diff <= 0:
                return 0
            if earliest is None or diff < earliest:
                earliest = diff
        elif self._snd_queue and not self._snd_buf:
            return 0  # data the window allows, not yet moved into flight
        return earliest

    def __repr__(self) -> str:
        return (f"<Kcp conv={self.conv} snd_una={self.snd_una} snd_nxt={self.snd_nxt} "
                f"rcv_nxt={self.rcv_nxt} waitsnd={self.waitsnd()} state={self.state:#x}>")

    # -- application side ---------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue ``data``; returns the bytes accepted, or -2 if it needs >= 128 fragments.

        Message mode: one message, split into fragments of ``mss`` bytes (an empty message is
        one empty segment). Stream mode: bytes first top up the last queued segment.
        """
        if type(data) is not bytes:
            data = bytes(data)
        mss = self.mss
        size = len(data)
        queue = self._snd_queue
        sent = 0
        stream = self.stream
        if stream:
            if queue:
                old = queue[-1]
                room = mss - len(old.data)
                if room > 0:
                    extend = size if size < room else room
                    old.data += data[:extend]
                    self._snd_queue_bytes += extend
                    old.frg = 0
                    data = data[extend:]
                    size -= extend
                    sent = extend
            if size <= 0:
                return sent
        if size <= mss:
            queue.append(_Segment(0, data))
            self._snd_queue_bytes += size
            return sent + size
        count = (size + mss - 1) // mss
        if count > MAX_FRAGMENTS:
            return sent if stream and sent > 0 else -2
        append = queue.append
        frg = count - 1
        for start in range(0, size, mss):
            append(_Segment(0 if stream else frg, data[start:start + mss]))
            frg -= 1
        self._snd_queue_bytes += size
        return sent + size

    def peeksize(self) -> int:
        """Size of the next complete message, or -1 if none is ready."""
        queue = self._rcv_queue
        if not queue:
            return -1
        frg, data = queue[0]
        if frg == 0:
            return len(data)
        if len(queue) < frg + 1:
            return -1
        total = 0
        for frg, data in queue:
            total += len(data)
            if frg == 0:
                break
        return total

    def recv(self) -> bytes | None:
        """The next complete message (stream mode: the next segment), or None."""
        queue = self._rcv_queue
        if not queue:
            return None
        rcv_wnd = self.rcv_wnd
        recover = len(queue) >= rcv_wnd
        frg, data = queue[0]
        if frg == 0:
            queue.popleft()
            message = data
        else:
            if len(queue) < frg + 1:
                return None
            parts = []
            pop = queue.popleft
            while queue:
                frg, data = pop()
                parts.append(data)
                if frg == 0:
                    break
            message = b"".join(parts)
        if self._rcv_buf:
            self._move_rcv_buf()
        if recover and len(queue) < rcv_wnd:
            self.probe |= ASK_TELL
        return message

    def recv_into(self, buffer: bytearray | memoryview, *, peek: bool = False) -> int:
        """``ikcp_recv``: copy the next message into ``buffer``; returns its length, or
        -1 (nothing queued), -2 (message incomplete), -3 (``buffer`` too small).
        With ``peek`` the message is copied but stays queued."""
        queue = self._rcv_queue
        if not queue:
            return -1
        size = self.peeksize()
        if size < 0:
            return -2
        if size > len(buffer):
            return -3
        view = memoryview(buffer).cast("B")
        if peek:
            offset = 0
            for frg, data in queue:
                view[offset:offset + len(data)] = data
                offset += len(data)
                if frg == 0:
                    break
            if self._rcv_buf:
                self._move_rcv_buf()
            return size
        message = self.recv()
        if message is None:  # pragma: no cover - peeksize() said a message is complete
            return -2
        view[:size] = message
        return size

    # -- datagrams in ---------------------------------------------------------------------

    def _move_rcv_buf(self) -> None:
        """Move the in-order run at the head of rcv_buf to rcv_queue."""
        rcv_buf = self._rcv_buf
        queue = self._rcv_queue
        rcv_wnd = self.rcv_wnd
        rcv_nxt = self.rcv_nxt
        held = self.rcv_buf_bytes
        while rcv_nxt in rcv_buf and len(queue) < rcv_wnd:
            segment = rcv_buf.pop(rcv_nxt)
            held -= len(segment[1])
            queue.append(segment)
            rcv_nxt = (rcv_nxt + 1) & _M
        self.rcv_nxt = rcv_nxt
        self.rcv_buf_bytes = held

    def _update_ack_exact(self, rtt: int) -> None:
        """``ikcp_update_ack`` with the reference's 32-bit signed arithmetic, for any value."""
        srtt = self.rx_srtt
        if srtt == 0:
            srtt = rtt
            rttval = rtt // 2
        else:
            delta = abs(rtt - srtt)
            rttval = _s32(_div_trunc(_s32(3 * self.rx_rttval) + delta, 4))
            srtt = _div_trunc(_s32(7 * srtt + rtt), 8)
            if srtt < 1:
                srtt = 1
        self.rx_srtt = srtt
        self.rx_rttval = rttval
        rto = (srtt + max(self.interval & _M, (4 * rttval) & _M)) & _M
        self.rx_rto = min(max(self.rx_minrto & _M, rto), RTO_MAX)

    def input(self, datagram: bytes | bytearray | memoryview) -> int:
        """``ikcp_input``: process a datagram from the peer.

        Returns 0, or -1 (shorter than 24 bytes / wrong conv), -2 (a length field exceeds
        the datagram), -3 (unknown command), -4 (a PUSH longer than ``max_segment``).
        Segments before a bad one stay processed. Never raises on hostile bytes.
        """
        data = datagram if type(datagram) is bytes else bytes(datagram)
        size = len(data)
        if size < OVERHEAD:
            return -1
        conv = self.conv
        current = self.current
        prev_una = snd_una = self.snd_una
        snd_nxt = self.snd_nxt
        rcv_nxt = self.rcv_nxt
        rcv_wnd = self.rcv_wnd
        snd_buf = self._snd_buf
        rcv_buf = self._rcv_buf
        rcv_queue = self._rcv_queue
        acklist = self._acklist
        ack_flag = False
        maxack = latest_ts = 0
        rmt_wnd = self.rmt_wnd
        srtt = self.rx_srtt
        rttval = self.rx_rttval
        rx_rto = self.rx_rto
        error = 0
        offset = 0
        max_segment = self.max_segment
        freed = 0  # payload bytes acknowledged out of snd_buf
        while size - offset >= OVERHEAD:
            sconv, cmd, frg, wnd, ts, sn, una, length = _unpack_from(data, offset)
            if sconv != conv:
                error = -1
                break
            offset += OVERHEAD
            if length > size - offset:
                error = -2
                break
            if cmd < CMD_PUSH or cmd > CMD_WINS:
                error = -3
                break
            rmt_wnd = wnd
            # una: everything before it has been received by the peer
            if snd_buf:
                if una != snd_una:
                    count = (una - snd_una) & _M
                    if count < _HALF:
                        flight = (snd_nxt - snd_una) & _M
                        if count >= flight:
                            snd_buf.clear()
                            freed = -1  # everything in flight
                        else:
                            pop = snd_buf.pop
                            for i in range(count):
                                seg = pop((snd_una + i) & _M, None)
                                if seg is not None and freed >= 0:
                                    freed += len(seg.data)
                        snd_una = next(iter(snd_buf)) if snd_buf else snd_nxt
            else:
                snd_una = snd_nxt
            if cmd == CMD_ACK:
                rtt = (current - ts) & _M
                if rtt < _HALF:
                    if (rtt < 0x8000000 and 0 <= srtt < 0x8000000
                            and 0 <= rttval < 0x8000000):
                        if srtt == 0:
                            srtt = rtt
                            rttval = rtt >> 1
                        else:
                            delta = rtt - srtt
                            if delta < 0:
                                delta = -delta
                            rttval = (3 * rttval + delta) >> 2
                            srtt = (7 * srtt + rtt) >> 3
                            if srtt < 1:
                                srtt = 1
                        interval = self.interval & _M
                        rto = 4 * rttval
                        rto = (srtt + (rto if rto > interval else interval)) & _M
                        minrto = self.rx_minrto & _M
                        if rto < minrto:
                            rto = minrto
                        rx_rto = rto if rto < RTO_MAX else RTO_MAX
                    else:
                        self.rx_srtt = srtt
                        self.rx_rttval = rttval
                        self._update_ack_exact(rtt)
                        srtt = self.rx_srtt
                        rttval = self.rx_rttval
                        rx_rto = self.rx_rto
                # selective ack of one sn in [snd_una, snd_nxt)
                if ((sn - snd_una) & _M) < _HALF and ((sn - snd_nxt) & _M) >= _HALF:
                    seg = snd_buf.pop(sn, None)
                    if seg is not None:
                        if freed >= 0:
                            freed += len(seg.data)
                        if sn == snd_una:
                            snd_una = next(iter(snd_buf)) if snd_buf else snd_nxt
                if not ack_flag:
                    ack_flag = True
                    maxack = sn
                    latest_ts = ts
                elif (0 < ((sn - maxack) & _M) < _HALF
                      and 0 < ((ts - latest_ts) & _M) < _HALF):
                    maxack = sn
                    latest_ts = ts
            elif cmd == CMD_PUSH:
                if length > max_segment:
                    error = -4
                    break
                if ((sn - rcv_nxt - rcv_wnd) & _M) >= _HALF:  # sn < rcv_nxt + rcv_wnd
                    if ((sn - rcv_nxt) & _M) < _HALF:  # sn >= rcv_nxt
                        if sn == rcv_nxt and not rcv_buf and len(rcv_queue) < rcv_wnd:
                            acklist.append(sn)
                            acklist.append(ts)
                            rcv_queue.append((frg, data[offset:offset + length]))
                            rcv_nxt = (rcv_nxt + 1) & _M
                        elif (sn in rcv_buf or sn == rcv_nxt
                              or self.rcv_buf_bytes + length <= self.rcv_buf_limit):
                            acklist.append(sn)
                            acklist.append(ts)
                            if sn not in rcv_buf:
                                rcv_buf[sn] = (frg, data[offset:offset + length])
                                self.rcv_buf_bytes += length
                            while rcv_nxt in rcv_buf and len(rcv_queue) < rcv_wnd:
                                segment = rcv_buf.pop(rcv_nxt)
                                self.rcv_buf_bytes -= len(segment[1])
                                rcv_queue.append(segment)
                                rcv_nxt = (rcv_nxt + 1) & _M
                        # else: over rcv_buf_limit: dropped unacknowledged (retransmitted)
                    else:
                        acklist.append(sn)
                        acklist.append(ts)
            elif cmd == CMD_WASK:
                self.probe |= ASK_TELL
            offset += length

        self.snd_una = snd_una
        if freed:
            if freed < 0:
                self._snd_buf_bytes = sum(len(seg.data) for seg in snd_buf.values())
            else:
                self._snd_buf_bytes -= freed
        self.rcv_nxt = rcv_nxt
        self.rmt_wnd = rmt_wnd
        self.rx_srtt = srtt
        self.rx_rttval = rttval
        self.rx_rto = rx_rto
        if error:
            return error

        # fast-ack counting: segments skipped by the newest ack (sent no later than it)
        if (ack_flag and snd_buf and ((maxack - snd_una) & _M) < _HALF
                and ((maxack - snd_nxt) & _M) >= _HALF):
            for seg in snd_buf.values():
                distance = (maxack - seg.sn) & _M
                if distance >= _HALF:
                    break
                if distance and ((latest_ts - seg.ts) & _M) < _HALF:
                    seg.fastack += 1
                    self._rescan = True

        if 0 < ((snd_una - prev_una) & _M) < _HALF:
            # congestion window growth
            cwnd = self.cwnd
            if cwnd < rmt_wnd:
                mss = self.mss
                incr = self.incr
                if cwnd < self.ssthresh:
                    cwnd += 1
                    incr = (incr + mss) & _M
                else:
                    if incr < mss:
                        incr = mss
                    incr = (incr + ((mss * mss) & _M) // incr + mss // 16) & _M
                    if ((cwnd + 1) * mss) & _M <= incr:
                        cwnd = ((incr + mss - 1) & _M) // mss
                if cwnd > rmt_wnd:
                    cwnd = rmt_wnd
                    incr = (rmt_wnd * mss) & _M
                self.cwnd = cwnd
                self.incr = incr
        return 0

    # -- datagrams out --------------------------------------------------------------------

    def flush(self) -> None:
        """``ikcp_flush``: send ACKs, probes and data now (no-op before the first update)."""
        if not self.updated:
            return
        current = self.current
        conv = self.conv
        mtu = self.mtu
        emit = self._emit
        rcv_wnd = self.rcv_wnd
        nrcv_que = len(self._rcv_queue)
        wnd = (rcv_wnd - nrcv_que) & 0xFFFF if nrcv_que < rcv_wnd else 0
        una = self.rcv_nxt
        parts: list[bytes] = []
        append = parts.append
        size = 0

        # the reference builds ACKs in one template segment and then reuses it for WASK/WINS,
        # so a probe carries the ts and sn of the last ACK of this flush (0, 0 if none)
        sn = ts = 0
        acklist = self._acklist
        if acklist:
            it = iter(acklist)
            for sn, ts in zip(it, it, strict=True):
                if size + OVERHEAD > mtu:
                    emit(b"".join(parts))
                    parts = []
                    append = parts.append
                    size = 0
                append(_pack(conv, CMD_ACK, 0, wnd, ts, sn, una, 0))
                size += OVERHEAD
            acklist.clear()

        # window probing while the peer's window is closed
        if self.rmt_wnd == 0:
            if self.probe_wait == 0:
                self.probe_wait = PROBE_INIT
                self.ts_probe = (current + PROBE_INIT) & _M
            elif ((current - self.ts_probe) & _M) < _HALF:
                probe_wait = self.probe_wait
                if probe_wait < PROBE_INIT:
                    probe_wait = PROBE_INIT
                probe_wait += probe_wait // 2
                if probe_wait > PROBE_LIMIT:
                    probe_wait = PROBE_LIMIT
                self.probe_wait = probe_wait
                self.ts_probe = (current + probe_wait) & _M
                self.probe |= ASK_SEND
        else:
            self.ts_probe = 0
            self.probe_wait = 0

        probe = self.probe
        if probe:
            if probe & ASK_SEND:
                if size + OVERHEAD > mtu and size:
                    emit(b"".join(parts))
                    parts = []
                    append = parts.append
                    size = 0
                append(_pack(conv, CMD_WASK, 0, wnd, ts, sn, una, 0))
                size += OVERHEAD
            if probe & ASK_TELL:
                if size + OVERHEAD > mtu and size:
                    emit(b"".join(parts))
                    parts = []
                    append = parts.append
                    size = 0
                append(_pack(conv, CMD_WINS, 0, wnd, ts, sn, una, 0))
                size += OVERHEAD
            self.probe = 0

        # effective window; move queued segments into flight
        cwnd_eff = self.snd_wnd
        if self.rmt_wnd < cwnd_eff:
            cwnd_eff = self.rmt_wnd
        if not self.nocwnd and self.cwnd < cwnd_eff:
            cwnd_eff = self.cwnd
        snd_buf = self._snd_buf
        rx_rto = self.rx_rto
        rtomin = ((rx_rto >> 3) & _M) if self.nodelay_mode == 0 else 0
        # Shortcut: when no segment already in flight can be due (see _scan_wait), only the
        # segments moved now need a look; they come last in snd_buf, so the output is the
        # same as the reference's walk over the whole buffer.
        scan_time = self._scan_time
        shortcut = not self._rescan and ((current - scan_time) & _M) < self._scan_wait
        queue = self._snd_queue
        fresh: list[_Segment] = []
        if queue:
            snd_nxt = self.snd_nxt
            limit = (self.snd_una + cwnd_eff) & _M
            popleft = queue.popleft
            moved = 0
            while queue and ((snd_nxt - limit) & _M) >= _HALF:
                seg = popleft()
                moved += len(seg.data)
                seg.sn = snd_nxt
                seg.ts = current
                seg.resendts = current
                seg.rto = rx_rto & _M
                seg.fastack = 0
                seg.xmit = 0
                snd_buf[snd_nxt] = seg
                snd_nxt = (snd_nxt + 1) & _M
                if shortcut:
                    fresh.append(seg)
            self.snd_nxt = snd_nxt
            self._snd_queue_bytes -= moved
            self._snd_buf_bytes += moved

        fastresend = self._fastresend
        resent = fastresend if fastresend > 0 else _M
        change = 0
        lost = False
        dead_link = self.dead_link
        if shortcut:
            wait = self._scan_wait
            for seg in fresh:
                seg.xmit = 1
                rto = seg.rto = rx_rto & _M
                resendts = seg.resendts = (current + rto + rtomin) & _M
                due = (resendts - scan_time) & _M
                if due == 0 or due > _HALF:
                    wait = 0
                elif due < wait:
                    wait = due
                data = seg.data
                need = OVERHEAD + len(data)
                if size + need > mtu and size:
                    emit(b"".join(parts))
                    parts = []
                    append = parts.append
                    size = 0
                append(_pack(conv, CMD_PUSH, seg.frg, wnd, current, seg.sn, una, len(data)))
                append(data)
                size += need
                if dead_link <= 1:
                    self.state = STATE_DEAD
            self._scan_wait = wait
        elif snd_buf:
            nodelay = self.nodelay_mode
            fastlimit = self._fastlimit
            dead = False
            rescan = False
            wait = 0x40000000  # 2**30: bounds how far the clock may move before a rescan
            for seg in snd_buf.values():
                if seg.xmit == 0:
                    seg.xmit = 1
                    seg.rto = rx_rto & _M
                    seg.resendts = (current + seg.rto + rtomin) & _M
                else:
                    due = (seg.resendts - current) & _M
                    if due == 0 or due > _HALF:  # timeout
                        seg.xmit += 1
                        self.xmit = (self.xmit + 1) & _M
                        rto = seg.rto
                        if nodelay == 0:
                            step = rx_rto & _M
                            rto += rto if rto > step else step
                        elif nodelay < 2:
                            rto += _div_trunc(_s32(rto), 2)
                        else:
                            rto += _div_trunc(_s32(rx_rto), 2)
                        rto &= _M
                        seg.rto = rto
                        seg.resendts = (current + rto) & _M
                        lost = True
                        # a timeout keeps the fast-ack count: the next flush may fast-resend
                        if seg.fastack >= resent and (seg.xmit <= fastlimit or fastlimit <= 0):
                            rescan = True
                    elif seg.fastack >= resent and (seg.xmit <= fastlimit or fastlimit <= 0):
                        seg.xmit += 1
                        seg.fastack = 0
                        seg.resendts = (current + seg.rto) & _M
                        change += 1
                    else:
                        if due < wait:
                            wait = due
                        continue
                due = (seg.resendts - current) & _M
                if due == 0 or due > _HALF:
                    wait = 0
                elif due < wait:
                    wait = due
                seg.ts = current
                data = seg.data
                need = OVERHEAD + len(data)
                if size + need > mtu and size:
                    emit(b"".join(parts))
                    parts = []
                    append = parts.append
                    size = 0
                append(_pack(conv, CMD_PUSH, seg.frg, wnd, current, seg.sn, una, len(data)))
                append(data)
                size += need
                if seg.xmit >= dead_link:
                    dead = True
            if dead:
                self.state = STATE_DEAD
            self._scan_time = current
            self._scan_wait = wait
            self._rescan = rescan
        else:
            self._scan_time = current
            self._scan_wait = 0x40000000
            self._rescan = False

        if size:
            emit(b"".join(parts))

        if change:
            ssthresh = ((self.snd_nxt - self.snd_una) & _M) // 2
            if ssthresh < THRESH_MIN:
                ssthresh = THRESH_MIN
            self.ssthresh = ssthresh
            self.cwnd = (ssthresh + resent) & _M
            self.incr = (self.cwnd * self.mss) & _M
        if lost:
            ssthresh = cwnd_eff // 2
            if ssthresh < THRESH_MIN:
                ssthresh = THRESH_MIN
            self.ssthresh = ssthresh
            self.cwnd = 1
            self.incr = self.mss
        if self.cwnd < 1:
            self.cwnd = 1
            self.incr = self.mss

    def update(self, now_ms: int) -> None:
        """``ikcp_update``: set the clock; flush if a flush interval has elapsed."""
        current = now_ms & _M
        self.current = current
        if not self.updated:
            self.updated = 1
            self.ts_flush = current
        slap = _s32(current - self.ts_flush)
        if slap >= 10000 or slap < -10000:
            self.ts_flush = current
            slap = 0
        if slap >= 0:
            ts_flush = (self.ts_flush + self.interval) & _M
            if ((current - ts_flush) & _M) < _HALF:
                ts_flush = (current + self.interval) & _M
            self.ts_flush = ts_flush
            self.flush()

    def check(self, now_ms: int) -> int:
        """``ikcp_check``: when ``update`` should next be called (pure; ignores pending ACKs
        and queued data, so call ``update``/``flush`` after ``input``/``send``)."""
        current = now_ms & _M
        if not self.updated:
            return current
        ts_flush = self.ts_flush
        slap = _s32(current - ts_flush)
        if slap >= 10000 or slap < -10000:
            ts_flush = current
        if ((current - ts_flush) & _M) < _HALF:
            return current
        tm_flush = _s32(ts_flush - current)
        tm_packet = 0x7FFFFFFF
        for seg in self._snd_buf.values():
            diff = _s32(seg.resendts - current)
            if diff <= 0:
                return current
            if diff < tm_packet:
                tm_packet = diff
        minimal = tm_packet if tm_packet < tm_flush else tm_flush
        if minimal >= self.interval:
            minimal = self.interval
        return (current + minimal) & _M
