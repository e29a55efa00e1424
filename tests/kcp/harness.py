"""Drivers shared by the KCP tests: one API over our core and the C reference (siokcp),
lockstep twins that run both with the same calls and compare every datagram and every
control field, and a simulated lossy network for interop runs."""

from __future__ import annotations

import heapq
import os
import random
import struct
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from muxio.transports.kcp.core import Kcp

HEADER = struct.Struct("<IBBHIIII")

#: hypothesis examples per randomized test; raise it (KCP_EXAMPLES=5000) for a bug hunt
EXAMPLES = int(os.environ.get("KCP_EXAMPLES", "120"))
#: under CI the randomized tests replay the same examples every run (no flaky discoveries)
DERANDOMIZE = os.environ.get("CI", "").lower() == "true"
M32 = 0xFFFFFFFF
CMD_NAMES = {81: "PUSH", 82: "ACK", 83: "WASK", 84: "WINS"}

#: control fields both implementations expose under the same name
FIELDS = (
    "conv", "mtu", "mss", "snd_una", "snd_nxt", "rcv_nxt", "ssthresh", "rx_rttval",
    "rx_srtt", "rx_rto", "rx_minrto", "snd_wnd", "rcv_wnd", "rmt_wnd", "cwnd", "probe",
    "current", "interval", "ts_flush", "xmit", "nrcv_buf", "nsnd_buf", "nrcv_que",
    "nsnd_que", "updated", "ts_probe", "probe_wait", "dead_link", "incr", "fastresend",
    "fastlimit", "nocwnd", "stream",
)

#: IINT32 in ikcp.h; siokcp declares some of them unsigned, so compare the 32-bit patterns
SIGNED_FIELDS = frozenset({"rx_rttval", "rx_srtt", "rx_rto", "rx_minrto"})


def describe(datagram: bytes) -> str:
    """Human-readable segments of a datagram, for assertion messages."""
    parts = []
    offset = 0
    while len(datagram) - offset >= 24:
        conv, cmd, frg, wnd, ts, sn, una, length = HEADER.unpack_from(datagram, offset)
        parts.append(f"{CMD_NAMES.get(cmd, cmd)}(conv={conv} frg={frg} wnd={wnd} ts={ts} "
                     f"sn={sn} una={una} len={length})")
        offset += 24 + length
    if offset != len(datagram):
        parts.append(f"<{len(datagram) - offset} trailing bytes>")
    return f"[{len(datagram)}B " + " ".join(parts) + "]"


def segments(datagram: bytes) -> list[tuple[int, int, int, int, int, int, int, int]]:
    """The decoded headers of every segment in a datagram."""
    result = []
    offset = 0
    while len(datagram) - offset >= 24:
        header = HEADER.unpack_from(datagram, offset)
        result.append(header)
        offset += 24 + header[7]
    return result


class PyEnd:
    """Our core behind the common test API."""

    kind = "py"

    def __init__(self, conv: int) -> None:
        self.kcp = Kcp(conv)

    def send(self, data: bytes) -> int:
        return self.kcp.send(data)

    def recv(self) -> bytes | None:
        return self.kcp.recv()

    def input(self, data: bytes) -> int:
        return self.kcp.input(data)

    def update(self, now: int) -> None:
        self.kcp.update(now)

    def flush(self) -> None:
        self.kcp.flush()

    def check(self, now: int) -> int:
        return self.kcp.check(now)

    def nodelay(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        self.kcp.nodelay(nodelay, interval, resend, nc)

    def wndsize(self, snd: int, rcv: int) -> None:
        self.kcp.wndsize(snd, rcv)

    def setmtu(self, mtu: int) -> None:
        self.kcp.setmtu(mtu)

    def waitsnd(self) -> int:
        return self.kcp.waitsnd()

    def peeksize(self) -> int:
        return self.kcp.peeksize()

    def get(self, name: str) -> int:
        if name == "state" or name in SIGNED_FIELDS:
            return int(getattr(self.kcp, name)) & M32
        if name == "nodelay":
            return int(self.kcp.nodelay_mode)
        return int(getattr(self.kcp, name))

    def set(self, name: str, value: int) -> None:
        setattr(self.kcp, "nodelay_mode" if name == "nodelay" else name, value)

    def drain(self) -> list[bytes]:
        return self.kcp.drain_output()


class CEnd:
    """The C reference (siokcp) behind the common test API."""

    kind = "c"

    def __init__(self, module: ModuleType, conv: int) -> None:
        out: list[bytes] = []

        def output(data: bytes) -> int:  # siokcp needs an int back
            out.append(data)
            return 0

        # no reference cycle: the C object is not garbage-collected (cython no_gc)
        self.out = out
        self.kcp = module.KCPConnection(conv, output, _ignore_log)

    def send(self, data: bytes) -> int:
        try:
            return int(self.kcp.send(data))
        except ValueError as exc:  # siokcp raises for negative return codes
            return int(str(exc).rsplit(" ", 1)[1])

    def recv(self) -> bytes | None:
        message: bytes | None = self.kcp.next_event()
        return message

    def input(self, data: bytes) -> int:
        return int(self.kcp.receive_data(data))

    def update(self, now: int) -> None:
        self.kcp.update(now)

    def flush(self) -> None:
        self.kcp.flush()

    def check(self, now: int) -> int:
        return int(self.kcp.check(now))

    def nodelay(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        self.kcp.nodelay(nodelay, interval, resend, nc)

    def wndsize(self, snd: int, rcv: int) -> None:
        self.kcp.wndsize(snd, rcv)

    def setmtu(self, mtu: int) -> None:
        if self.kcp.setmtu(mtu) != 0:
            raise ValueError(f"setmtu({mtu}) refused")

    def waitsnd(self) -> int:
        return int(self.kcp.waitsnd())

    def peeksize(self) -> int:
        return int(self.kcp.peeksize())

    def get(self, name: str) -> int:
        if name == "state" or name in SIGNED_FIELDS:
            return int(getattr(self.kcp, name)) & M32
        if name == "nodelay":
            return int(self.kcp.nodelay_)
        return int(getattr(self.kcp, name))

    def set(self, name: str, value: int) -> None:
        if name == "state":
            value = value - (1 << 32) if value >= 1 << 31 else value
        setattr(self.kcp, "nodelay_" if name == "nodelay" else name, value)

    def drain(self) -> list[bytes]:
        out = self.out[:]
        self.out.clear()
        return out


def _ignore_log(_message: str) -> None:
    return None


End = PyEnd | CEnd


class LockstepError(AssertionError):
    pass


class Twin:
    """Our core and the C core, driven with identical calls; every result, every output
    datagram and every control field must be identical after every call."""

    def __init__(self, module: ModuleType, conv: int, name: str = "kcp") -> None:
        self.py = PyEnd(conv)
        self.c = CEnd(module, conv)
        self.name = name
        self.history: list[str] = []
        self.datagrams = 0

    def do(self, op: str, *args: Any) -> tuple[Any, list[bytes]]:
        """Apply one call to both; return (result, datagrams emitted)."""
        self.history.append(f"{op}{args if len(repr(args)) < 80 else '(...)'}")
        result_py = getattr(self.py, op)(*args)
        result_c = getattr(self.c, op)(*args)
        out_py = self.py.drain()
        out_c = self.c.drain()
        if result_py != result_c:
            self._fail(f"{op}{args!r:.80} returned {result_py!r:.200} (py) vs "
                       f"{result_c!r:.200} (C)")
        if out_py != out_c:
            self._fail(f"{op} output differs:\n py: {[describe(d) for d in out_py]}\n"
                       f"  C: {[describe(d) for d in out_c]}")
        self.compare_state(op)
        self.datagrams += len(out_py)
        return result_py, out_py

    def compare_state(self, op: str = "") -> None:
        for name in (*FIELDS, "state", "nodelay"):
            mine = self.py.get(name)
            theirs = self.c.get(name)
            if mine != theirs:
                self._fail(f"after {op}: field {name} = {mine} (py) vs {theirs} (C)")

    def set(self, name: str, value: int) -> None:
        self.py.set(name, value)
        self.c.set(name, value)
        self.compare_state(f"set {name}")

    def configure(self, setup: Callable[[End], None]) -> None:
        setup(self.py)
        setup(self.c)
        self.compare_state("configure")

    def _fail(self, message: str) -> None:
        recent = "; ".join(self.history[-12:])
        raise LockstepError(f"{self.name}: {message}\n  recent calls: {recent}")


class Duet:
    """Two twins (A and B) wired to each other with a fake clock.

    Datagrams emitted by a side wait in ``pending[side]`` until ``deliver`` hands them
    (possibly dropped, duplicated or reordered) to the other side.
    """

    def __init__(self, module: ModuleType, conv: int = 0x11223344, start: int = 0) -> None:
        self.sides = {"a": Twin(module, conv, "A"), "b": Twin(module, conv, "B")}
        self.pending: dict[str, list[bytes]] = {"a": [], "b": []}
        self.received: dict[str, list[bytes]] = {"a": [], "b": []}
        self.now = start & M32

    def configure(self, setup: Callable[[End], None]) -> None:
        for twin in self.sides.values():
            twin.configure(setup)

    def set(self, name: str, value: int) -> None:
        for twin in self.sides.values():
            twin.set(name, value)

    def call(self, side: str, op: str, *args: Any) -> Any:
        result, out = self.sides[side].do(op, *args)
        self.pending[side].extend(out)
        return result

    def send(self, side: str, data: bytes) -> int:
        result: int = self.call(side, "send", data)
        return result

    def update(self, side: str | None = None) -> None:
        for name in (side,) if side else ("a", "b"):
            self.call(name, "update", self.now)

    def tick(self, dt: int) -> None:
        self.now = (self.now + dt) & M32
        self.update()

    def check(self, side: str) -> int:
        result: int = self.call(side, "check", self.now)
        return result

    def deliver(self, side: str, rng: random.Random | None = None, *, loss: float = 0.0,
                dup: float = 0.0, reorder: bool = False, flush: bool = False) -> list[int]:
        """Hand ``side``'s pending datagrams to the other side; returns input()'s codes."""
        datagrams = self.pending[side]
        self.pending[side] = []
        plan: list[bytes] = []
        for datagram in datagrams:
            if rng is not None and rng.random() < loss:
                continue
            plan.append(datagram)
            if rng is not None and rng.random() < dup:
                plan.append(datagram)
        if reorder and rng is not None:
            rng.shuffle(plan)
        other = "b" if side == "a" else "a"
        codes = [self.call(other, "input", datagram) for datagram in plan]
        if flush:
            self.call(other, "flush")
        return codes

    def recv_all(self, side: str) -> list[bytes]:
        messages = []
        while True:
            message = self.call(side, "recv")
            if message is None:
                break
            messages.append(message)
        self.received[side].extend(messages)
        return messages

    def exchange(self, steps: int, dt: int = 10, **deliver: Any) -> None:
        """``steps`` rounds of: tick, deliver both ways, receive."""
        for _ in range(steps):
            self.tick(dt)
            self.deliver("a", **deliver)
            self.deliver("b", **deliver)
            self.recv_all("a")
            self.recv_all("b")

    @property
    def datagrams(self) -> int:
        return sum(twin.datagrams for twin in self.sides.values())


# -- simulated network for interop (not lockstep) ------------------------------------------


class SimNet:
    """Two endpoints of any implementation over a lossy, delaying, reordering, duplicating
    link with a fake millisecond clock. Endpoints flush right after each input/send (the
    event-driven way) and are updated every ``tick`` ms."""

    def __init__(self, a: End, b: End, *, seed: int, loss: float = 0.0, dup: float = 0.0,
                 delay: tuple[int, int] = (5, 5), start: int = 0) -> None:
        self.ends = {"a": a, "b": b}
        self.rng = random.Random(seed)
        self.loss = loss
        self.dup = dup
        self.delay = delay
        self.clock = start  # unbounded; endpoints see it masked to 32 bits
        self.queue: list[tuple[int, int, str, bytes]] = []  # (due, seq, to, datagram)
        self.seq = 0
        self.sent = 0
        self.lost = 0
        for end in self.ends.values():
            end.update(self.now)

    @property
    def now(self) -> int:
        return self.clock & M32

    def _pump(self, side: str) -> None:
        end = self.ends[side]
        other = "b" if side == "a" else "a"
        for datagram in end.drain():
            self.sent += 1
            copies = 1 + (self.rng.random() < self.dup)
            for _ in range(copies):
                if self.rng.random() < self.loss:
                    self.lost += 1
                    continue
                due = self.clock + self.rng.randint(*self.delay)
                self.seq += 1
                heapq.heappush(self.queue, (due, self.seq, other, datagram))

    def send(self, side: str, data: bytes) -> int:
        end = self.ends[side]
        code = end.send(data)
        end.flush()
        self._pump(side)
        return code

    def step(self, dt: int = 1) -> None:
        self.clock += dt
        while self.queue and self.queue[0][0] <= self.clock:
            _, _, to, datagram = heapq.heappop(self.queue)
            end = self.ends[to]
            end.update(self.now)
            code = end.input(datagram)
            if code != 0:
                raise AssertionError(f"input() = {code} for a well-formed datagram")
            end.flush()
            self._pump(to)
        for side, end in self.ends.items():
            end.update(self.now)
            self._pump(side)

    def recv(self, side: str) -> list[bytes]:
        end = self.ends[side]
        messages = []
        while (message := end.recv()) is not None:
            messages.append(message)
        end.flush()  # a reopened window is announced at once
        self._pump(side)
        return messages


def run_transfer(net: SimNet, plan: Iterable[tuple[str, bytes]], *, stream: bool,
                 limit_ms: int = 600_000, backlog: int = 256) -> dict[str, list[bytes]]:
    """Send every (side, message) of ``plan`` (keeping at most ``backlog`` segments queued
    per side), run the network until everything is delivered, return what each side got."""
    todo = {"a": [m for s, m in plan if s == "a"], "b": [m for s, m in plan if s == "b"]}
    want = {"a": b"".join(todo["b"]), "b": b"".join(todo["a"])}
    expected_counts = {"a": len(todo["b"]), "b": len(todo["a"])}
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    nexts = {"a": 0, "b": 0}
    start = net.clock
    while True:
        for side in ("a", "b"):
            end = net.ends[side]
            while nexts[side] < len(todo[side]) and end.waitsnd() < backlog:
                code = net.send(side, todo[side][nexts[side]])
                assert code >= 0, f"send refused: {code}"
                nexts[side] += 1
        net.step(1)
        for side in ("a", "b"):
            got[side].extend(net.recv(side))
        if stream:
            done = all(len(b"".join(got[s])) >= len(want[s]) for s in ("a", "b"))
        else:
            done = all(len(got[s]) >= expected_counts[s] for s in ("a", "b"))
        if done and all(nexts[s] == len(todo[s]) for s in ("a", "b")):
            return got
        if net.clock - start > limit_ms:
            raise AssertionError(
                f"transfer incomplete after {limit_ms} ms: got {[len(got[s]) for s in got]} "
                f"messages, sent {net.sent} datagrams, lost {net.lost}")


# -- invariants -------------------------------------------------------------------------


def check_invariants(kcp: Kcp) -> None:
    """Structural invariants of our control block that hold whatever it was fed."""
    u32_fields = ("snd_una", "snd_nxt", "rcv_nxt", "current", "ts_flush", "ts_probe",
                  "cwnd", "incr", "ssthresh", "rmt_wnd", "state", "probe_wait")
    for name in u32_fields:
        value = getattr(kcp, name)
        assert 0 <= value <= M32, f"{name} = {value} is not a u32"
    assert kcp.state in (0, M32)
    assert 0 <= kcp.rx_rto <= 60000
    assert kcp.rmt_wnd <= 0xFFFF
    snd_buf = list(kcp._snd_buf)
    if snd_buf:
        assert kcp.snd_una == snd_buf[0]
        flight = (kcp.snd_nxt - kcp.snd_una) & M32
        assert all((sn - kcp.snd_una) & M32 < flight for sn in snd_buf)
        offsets = [(sn - kcp.snd_una) & M32 for sn in snd_buf]
        assert offsets == sorted(offsets)
        assert all(seg.sn == sn for sn, seg in kcp._snd_buf.items())
    else:
        assert kcp.snd_una == kcp.snd_nxt
    assert kcp.nrcv_que <= kcp.rcv_wnd
    for sn in kcp._rcv_buf:
        assert (sn - kcp.rcv_nxt) & M32 < kcp.rcv_wnd, "rcv_buf holds a segment off window"
    if kcp.rcv_nxt in kcp._rcv_buf:
        assert kcp.nrcv_que >= kcp.rcv_wnd, "an in-order segment was left in rcv_buf"
    assert len(kcp._acklist) % 2 == 0
    for frg, data in kcp._rcv_queue:
        assert 0 <= frg <= 255
        assert isinstance(data, bytes)
