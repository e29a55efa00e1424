"""In-memory KCP transfer: muxio's pure-Python core against the C reference (siokcp).

Two control blocks per implementation joined by lists (no sockets, no loss), a fake clock
advanced 1 ms per round. Two ways of driving them: *batched*, the receiver takes every
datagram of a round and flushes once (how the KCP transport runs since it flushes at the
end of a loop iteration), and *per-datagram*, a flush after every input (one ACK datagram
per data datagram). Reports goodput (payload bytes delivered per wall-clock second), CPU
time per data datagram, and ours/C. Used by `muxio bench kcp` and benchmarks/kcp_core.py.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

from muxio.transports.kcp.core import PROFILES, Kcp, KcpProfile

CONV = 0x5EED
OURS = "muxio (Python)"
C_REF = "ikcp (C, siokcp)"
MODES = {"batched": False, "per-datagram": True}


@dataclass
class Result:
    name: str
    profile: str
    mode: str
    nbytes: int
    wall: float
    cpu: float
    segments: int

    @property
    def goodput(self) -> float:
        """MiB/s of payload delivered."""
        return self.nbytes / self.wall / 2**20

    @property
    def us_per_segment(self) -> float:
        return self.cpu / self.segments * 1e6


def make_pair(name: str, profile: KcpProfile, wire_ab: list[bytes],
              wire_ba: list[bytes]) -> tuple[Any, Any]:
    if name == OURS:
        return (Kcp(CONV, wire_ab.append, profile=profile),
                Kcp(CONV, wire_ba.append, profile=profile))
    import siokcp

    def ab(data: bytes) -> int:
        wire_ab.append(data)
        return 0

    def ba(data: bytes) -> int:
        wire_ba.append(data)
        return 0

    ends = (siokcp.KCPConnection(CONV, ab, lambda _message: None),
            siokcp.KCPConnection(CONV, ba, lambda _message: None))
    for end in ends:
        end.nodelay(profile.nodelay, profile.interval, profile.resend, profile.nc)
        end.wndsize(profile.snd_wnd, profile.rcv_wnd)
        if profile.rx_minrto is not None:
            end.rx_minrto = profile.rx_minrto
    return ends


def transfer(name: str, profile: KcpProfile, mode: str, total: int,
             message_size: int = 16384) -> Result:
    per_datagram = MODES[mode]
    wire_ab: list[bytes] = []
    wire_ba: list[bytes] = []
    a, b = make_pair(name, profile, wire_ab, wire_ba)
    is_c = name != OURS
    a_input = a.receive_data if is_c else a.input
    b_input = b.receive_data if is_c else b.input
    b_recv = b.next_event if is_c else b.recv
    message = bytes(range(256)) * (message_size // 256) + bytes(message_size % 256)
    backlog = 2 * profile.snd_wnd
    total -= total % message_size
    now = 0
    a.update(now)
    b.update(now)
    sent = received = segments = 0
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    while received < total:
        while sent < total and a.waitsnd() < backlog:
            a.send(message)
            sent += message_size
        a.flush()
        if per_datagram:
            for datagram in wire_ab:
                segments += 1
                b_input(datagram)
                b.flush()
                while (got := b_recv()) is not None:
                    if got != message:
                        raise AssertionError(f"{name}: corrupted message")
                    received += len(got)
            wire_ab.clear()
            for datagram in wire_ba:
                a_input(datagram)
                a.flush()
            wire_ba.clear()
        else:
            for datagram in wire_ab:
                segments += 1
                b_input(datagram)
            wire_ab.clear()
            b.flush()
            while (got := b_recv()) is not None:
                if got != message:
                    raise AssertionError(f"{name}: corrupted message")
                received += len(got)
            for datagram in wire_ba:
                a_input(datagram)
            wire_ba.clear()
        now += 1
        a.update(now)
        b.update(now)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    return Result(name, profile.name, mode, received, wall, cpu, segments)


def have_reference() -> bool:
    try:
        import siokcp  # noqa: F401
    except ImportError:
        return False
    return True


def compare(profiles: Sequence[str], *, nbytes: int, rounds: int,
            modes: Sequence[str] = tuple(MODES)) -> list[Result]:
    """Interleaved rounds of ours and C per profile and mode; each result the median."""
    names = [OURS, C_REF] if have_reference() else [OURS]
    samples: dict[tuple[str, str, str], list[Result]] = {}
    for _ in range(rounds):
        for profile in profiles:
            for mode in modes:
                for name in names:
                    result = transfer(name, PROFILES[profile], mode, nbytes)
                    samples.setdefault((name, profile, mode), []).append(result)
    medians = []
    for runs in samples.values():
        wall = statistics.median(r.wall for r in runs)
        medians.append(min(runs, key=lambda r: abs(r.wall - wall)))
    return medians


def render(results: Sequence[Result]) -> Table:
    table = Table(title="KCP core, in memory, no loss (median of rounds); ours/C = goodput "
                        "ratio (the C reference is the 1.0 column)")
    for column in ("profile", "driving", "implementation", "goodput MiB/s", "CPU us/datagram",
                   "ours/C"):
        table.add_column(column, justify="right" if "/" in column or "us" in column
                         else "left")
    reference = {(r.profile, r.mode): r for r in results if r.name == C_REF}
    for r in sorted(results, key=lambda r: (r.profile, r.mode, r.name != OURS)):
        c = reference.get((r.profile, r.mode))
        ratio = f"{r.goodput / c.goodput:.3f}" if c is not None and r.name == OURS else ""
        table.add_row(r.profile, r.mode, r.name, f"{r.goodput:.1f}",
                      f"{r.us_per_segment:.2f}", ratio)
    return table


def to_json(results: Sequence[Result]) -> str:
    return json.dumps([asdict(r) | {"goodput_mib_s": r.goodput} for r in results], indent=1)
