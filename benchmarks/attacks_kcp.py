"""The KCP attacks of issue 13 at full size, against `muxio serve echo --transport kcp`.

    python benchmarks/attacks_kcp.py [--only flood,amplification,...] [--backend epoll]

Each attack runs against a fresh server process (loopback only, bounded in count and
time). Reported per attack: a good client's connect + 100-byte echo latency during the
attack (median and worst of a few tries), the server's CPU seconds and RSS growth over the
attack, and its log lines (WARNING and above go to stderr). The scaled-down versions that
assert bounds are tests/kcp/test_attacks.py.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

# measure the checkout this script lives in, whatever copy of muxio is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from muxio.loop import Loop
from muxio.testing.conformance import RecordingProtocol
from muxio.transports.kcp import transport as kcp
from muxio.transports.kcp.core import Kcp

HEADER = struct.Struct("<IBBHIIII")
PUSH, WASK = 81, 83
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, backend: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.stderr_lines = 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "muxio", "serve", "echo", "--transport", "kcp",
             "--host", "127.0.0.1", "--port", str(self.port), "--backend", backend],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._count_stderr, daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and good_client(self.port, timeout=0.5) is None:
            time.sleep(0.1)

    def _count_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "WARNING" in line or "ERROR" in line:
                self.stderr_lines += 1

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def good_client(port: int, timeout: float = 5.0) -> float | None:
    """Seconds for a fresh KCP client to connect and get a 100-byte echo; None = failed."""
    start = time.perf_counter()
    with Loop("epoll") as loop:
        client = RecordingProtocol()
        try:
            transport, _ = loop.run_until_complete(
                kcp.connect(lambda: client, "127.0.0.1", port, loop=loop), timeout=timeout)
            transport.write(b"g" * 100)
            loop.run_until(lambda: len(client.received) >= 100 or bool(client.lost_with),
                           timeout=timeout)
        except Exception:
            return None
        elapsed = time.perf_counter() - start
        transport.abort()
        loop.run_once(0)
        loop.run_once(0)
        return elapsed if len(client.received) >= 100 else None


def raw_socket(address: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((address, 0))
    return sock


def many_sources(target: tuple[str, int], count: int, window: int) -> None:
    """`count` live-looking sessions (a WASK then a 100-byte PUSH each, so each is proven
    by its second datagram) from 127.0.1.x sources, 200 per address: under the per-address
    cap, so they all open (the good client on 127.0.0.1 is another host)."""
    per_source = 200
    for first in range(0, count, per_source):
        sock = raw_socket(f"127.0.1.{first // per_source + 1}")
        datagrams = []
        for conv in range(first + 1, min(count, first + per_source) + 1):
            datagrams.append(HEADER.pack(conv, WASK, 0, window, 0, 0, 0, 0))
            datagrams.append(HEADER.pack(conv, PUSH, 0, window, 0, 0, 0, 100) + bytes(100))
        paced_send(sock, datagrams, target)
        sock.close()


def paced_send(sock: socket.socket, datagrams: list[bytes], target: tuple[str, int]) -> None:
    for index, datagram in enumerate(datagrams):
        sock.sendto(datagram, target)
        if index % 500 == 499:
            time.sleep(0.01)  # a loopback burst past the receive buffer tests the kernel


def flood(target: tuple[str, int], scale: int) -> Callable[[], dict[str, float]]:
    """Session-table lockout: openings (WASK / PUSH sn 0, a fresh conv each)."""
    sock = raw_socket()
    count = 10_000 * scale
    paced_send(sock, [HEADER.pack(conv, WASK if conv % 2 else PUSH, 0, 128, 0, 0, 0, 0)
                      for conv in range(1, count + 1)], target)
    return lambda: {"datagrams": count} | _close(sock)


def amplification(target: tuple[str, int], scale: int) -> Callable[[], dict[str, float]]:
    """One 1.4 KB PUSH from a source that never acknowledges; bytes drawn back in 20 s."""
    sock = raw_socket()
    sent = [0]

    def output(datagram: bytes) -> None:
        sent[0] += len(datagram)
        sock.sendto(datagram, target)

    sender = Kcp(4242, output)
    sender.update(0)
    sender.send(os.urandom(1376))
    sender.flush()
    time.sleep(20)
    sock.setblocking(False)
    received = 0
    while True:
        try:
            received += len(sock.recv(65535))
        except BlockingIOError:
            break
    return lambda: {"sent_bytes": sent[0], "drawn_bytes": received,
                    "factor": received / sent[0]} | _close(sock)


def unacked(target: tuple[str, int], scale: int) -> Callable[[], dict[str, float]]:
    """5000 sessions whose peers never acknowledge the echo (timers per session)."""
    count = 5000 * scale
    many_sources(target, count, 128)
    return lambda: {"sessions": count}


def zero_window(target: tuple[str, int], scale: int) -> Callable[[], dict[str, float]]:
    """1500 sessions advertising a zero receive window with data waiting for them."""
    count = 1500 * scale
    many_sources(target, count, 0)
    return lambda: {"sessions": count}


def out_of_order(target: tuple[str, int], scale: int) -> Callable[[], dict[str, float]]:
    """127 segments of 65 KB with sn 0 missing, on 10 sessions."""
    sock = raw_socket()
    sessions = 10 * scale
    for conv in range(1, sessions + 1):
        sock.sendto(HEADER.pack(conv, WASK, 0, 128, 0, 0, 0, 0), target)
        for sn in range(1, 128):
            sock.sendto(HEADER.pack(conv, PUSH, 0, 128, 0, sn, 0, 65000) + bytes(65000),
                        target)
            time.sleep(0.0005)
    return lambda: {"sessions": sessions, "bytes_sent_mb": sessions * 127 * 65000 / 1e6} | (
        _close(sock))


def _close(sock: socket.socket) -> dict[str, float]:
    sock.close()
    return {}


ATTACKS: dict[str, tuple[Callable[[tuple[str, int], int], Callable[[], dict[str, float]]],
                         float]] = {
    "flood": (flood, 5.0),
    "amplification": (amplification, 0.0),
    "unacked": (unacked, 30.0),
    "zero-window": (zero_window, 30.0),
    "out-of-order": (out_of_order, 5.0),
    "mass-expiry": (flood, 15.0),  # unproven sessions all expire ~10 s after opening
}


def run_attack(name: str, backend: str, scale: int) -> dict[str, object]:
    attack, observe = ATTACKS[name]
    server = Server(backend)
    try:
        cpu0, rss0 = server.cpu_seconds(), server.rss_mb()
        started = time.monotonic()
        finish = attack(("127.0.0.1", server.port), scale)
        latencies: list[float | None] = []
        observe_until = time.monotonic() + observe
        while True:
            latencies.append(good_client(server.port))
            if time.monotonic() >= observe_until:
                break
            time.sleep(min(1.0, max(0.0, observe_until - time.monotonic())))
        elapsed = time.monotonic() - started
        cpu = server.cpu_seconds() - cpu0
        served = [x for x in latencies if x is not None]
        return {
            "attack": name, "served": f"{len(served)}/{len(latencies)}",
            "latency_ms_median": statistics.median(served) * 1000 if served else None,
            "latency_ms_worst": max(served) * 1000 if served else None,
            "cpu_s": cpu, "cpu_pct": 100 * cpu / elapsed, "seconds": elapsed,
            "rss_mb_growth": server.rss_mb() - rss0, "log_lines": server.stderr_lines,
            **finish()}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(ATTACKS))
    parser.add_argument("--backend", default="epoll")
    parser.add_argument("--scale", type=int, default=1, help="multiply the attack sizes")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 140))
    table = Table(title=f"KCP attacks against muxio serve echo --transport kcp "
                        f"(backend {args.backend}, loopback)")
    columns = ("attack", "served", "latency_ms_median", "latency_ms_worst", "cpu_s",
               "cpu_pct", "seconds", "rss_mb_growth", "log_lines", "details")
    for column in columns:
        table.add_column(column, justify="left" if column in ("attack", "details")
                         else "right")
    for name in args.only.split(","):
        result = run_attack(name, args.backend, args.scale)
        details = ", ".join(f"{key}={value:.3g}" if isinstance(value, float)
                            else f"{key}={value}" for key, value in result.items()
                            if key not in columns)
        table.add_row(*[_fmt(result.get(column)) for column in columns[:-1]], details)
        console.print(f"{name}: done")
    console.print(table)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


if __name__ == "__main__":
    main()
