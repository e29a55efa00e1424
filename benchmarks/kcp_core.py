"""In-memory KCP transfer: our pure-Python core against the C reference (siokcp).

    python benchmarks/kcp_core.py [--mb 64] [--message 16384] [--repeat 3] [--profile]

Two control blocks per implementation, fast profile (nodelay 1, interval 10, resend 2,
nc 1, windows 128/128), no loss, driven event by event as the KCP transport does it: send and
flush, hand the datagrams to the peer's input, flush its ACKs, read, hand the ACKs back,
advance a fake clock by 1 ms. Reports goodput (payload bytes delivered per wall-clock
second) and CPU time per data segment, and the ratio between the two implementations.
``--profile`` runs ours under cProfile instead and prints the hottest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# measure the checkout this script lives in, whatever copy of muxio is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from muxio.transports.kcp.core import FAST, Kcp

CONV = 0x5EED
OURS = "muxio (Python)"
C_REF = "siokcp 0.0.5 (C)"


@dataclass
class Result:
    name: str
    nbytes: int
    wall: float
    cpu: float
    segments: int

    @property
    def goodput(self) -> float:
        return self.nbytes / self.wall / 2**20

    @property
    def us_per_segment(self) -> float:
        """CPU time per data datagram (each carries one full segment here)."""
        return self.cpu / self.segments * 1e6


def make_ours(wire_ab: list[bytes], wire_ba: list[bytes]) -> tuple[Any, Any]:
    a = Kcp(CONV, wire_ab.append, profile=FAST)
    b = Kcp(CONV, wire_ba.append, profile=FAST)
    return a, b


def make_c(wire_ab: list[bytes], wire_ba: list[bytes]) -> tuple[Any, Any]:
    import siokcp

    def ab(data: bytes) -> int:
        wire_ab.append(data)
        return 0

    def ba(data: bytes) -> int:
        wire_ba.append(data)
        return 0

    def log(_message: str) -> None:
        return None

    a = siokcp.KCPConnection(CONV, ab, log)
    b = siokcp.KCPConnection(CONV, ba, log)
    for end in (a, b):
        end.nodelay(FAST.nodelay, FAST.interval, FAST.resend, FAST.nc)
        end.wndsize(FAST.snd_wnd, FAST.rcv_wnd)
    return a, b


def transfer(name: str, make: Callable[[list[bytes], list[bytes]], tuple[Any, Any]],
             total: int, message_size: int, per_datagram: bool) -> Result:
    wire_ab: list[bytes] = []
    wire_ba: list[bytes] = []
    a, b = make(wire_ab, wire_ba)
    is_c = name != OURS
    a_input = a.receive_data if is_c else a.input
    b_input = b.receive_data if is_c else b.input
    b_recv = b.next_event if is_c else b.recv
    message = bytes(range(256)) * (message_size // 256) + bytes(message_size % 256)
    backlog = 2 * FAST.snd_wnd
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
            # as a transport does it: every datagram in is followed by a flush, so each
            # data datagram is answered by its own ACK datagram, and each ACK by a flush
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
    if received != total:
        raise AssertionError(f"{name}: {received} bytes of {total} received")
    return Result(name, received, wall, cpu, segments)


def best(name: str, make: Callable[[list[bytes], list[bytes]], tuple[Any, Any]],
         total: int, message_size: int, per_datagram: bool, *, repeat: int) -> Result:
    runs = [transfer(name, make, total, message_size, per_datagram) for _ in range(repeat)]
    return min(runs, key=lambda r: r.wall)


MODES = {"batched": False, "per-datagram": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=64.0, help="MiB to transfer per run")
    parser.add_argument("--message", type=int, default=16384, help="bytes per send()")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest counts")
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both")
    parser.add_argument("--profile", action="store_true", help="cProfile our core")
    args = parser.parse_args()
    total = int(args.mb * 2**20)
    total -= total % args.message
    modes = list(MODES) if args.mode == "both" else [args.mode]
    console = Console(width=max(Console().width, 120))
    if args.profile:
        for mode in modes:
            profiler = cProfile.Profile()
            profiler.enable()
            transfer(OURS, make_ours, total, args.message, MODES[mode])
            profiler.disable()
            console.print(f"[bold]{mode}[/]")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
        return
    try:
        import siokcp  # noqa: F401
        have_c = True
    except ImportError:
        have_c = False
        console.print("[yellow]siokcp not installed (pip install siokcp==0.0.5): "
                      "no C reference figures[/]")
    table = Table(title=f"KCP in-memory transfer: {args.mb:g} MiB in {args.message}-byte "
                        f"messages, fast profile, no loss (best of {args.repeat})")
    for column in ("implementation", "driving", "goodput MiB/s", "wall s", "CPU s",
                   "data datagrams", "CPU us/datagram", "ours/C goodput"):
        table.add_column(column, justify="left" if column in ("implementation", "driving")
                         else "right")
    for mode in modes:
        ours = best(OURS, make_ours, total, args.message, MODES[mode],
                    repeat=args.repeat)
        rows = [ours]
        if have_c:
            rows.append(best(C_REF, make_c, total, args.message, MODES[mode],
                    repeat=args.repeat))
        for r in rows:
            ratio = f"{ours.goodput / r.goodput:.3f}" if r is not ours else ""
            table.add_row(r.name, mode, f"{r.goodput:.1f}", f"{r.wall:.3f}", f"{r.cpu:.3f}",
                          f"{r.segments}", f"{r.us_per_segment:.2f}", ratio)
    console.print(table)
    console.print("batched: the receiver acks once per round (up to 58 ACKs per datagram); "
                  "per-datagram: a flush after every input, one ACK datagram per data "
                  "datagram (how the KCP transport runs).")


if __name__ == "__main__":
    main()
