"""`muxio bench scale`: the C10K figure, per backend, and what workers add.

    muxio bench scale [--idle 0,1000,5000,15000] [--backends ...] [--peers asyncio,uvloop]
                      [--workers 1,2,4] [--rounds 3] [--duration 3] [--json F] [--plot F]

Theory of operation
-------------------
For each target (a muxio backend, or a peer loop hosting the same echo handler) one
server process is started; then, for each K in `--idle` in increasing order, an idle
holder process (muxio.bench.idle_holder) brings the idle connections the server holds up
to K (a step at a time, each accepted before the next: see `hold_accepted`), the run
reads the server's resident memory, and runs the 50-connection ping-pong
(muxio.bench.loadgen_echo, 100-byte messages) beside them for `--duration` seconds:
messages per second and server CPU microseconds per message (its /proc CPU time). The
idle connections send nothing: a poller whose cost grows with the number of registered
fds (select, poll) pays for them on every wakeup, one whose cost does not (epoll) does
not; that is the C10K question.
Resident memory per idle connection is (RSS at K - RSS at 0) / K, the baseline taken after
the first ping-pong at K = 0 so that warm-up allocations are not counted as idle cost.

select cannot watch an fd >= FD_SETSIZE (1024): its line stops at the largest K that fits
under that limit with the ping-pong's connections (shown as its own point). Targets run
one after the other in each round (interleaved rounds, medians), the server pinned to one
CPU and the load generator to the other when there are two.

Workers (`--workers 1,2,4`): `muxio serve echo --workers W` on epoll holds
`--held-per-worker` x W idle connections (several holder processes, each from its own
loopback source address: one source address has only ~28 000 ephemeral ports towards one
server port, and each process is held to its open-file limit), then the ping-pong runs
beside them. Nothing is pinned there (the workers need every CPU, and the load generator
competes with them).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from muxio.bench.runner import (
    BenchError,
    ServerProcess,
    Target,
    cpu_sets,
    descendants,
    free_port,
)
from muxio.bench.workloads import echo_load
from muxio.cli.limits import raise_open_file_limit

DEFAULT_IDLE = (0, 1000, 5000, 15000)
PEERS = ("asyncio", "uvloop")
PINGPONG_CONNECTIONS = 50
PER_HOLDER = 18_000
"""Idle connections one holder process keeps (under a 20 000 open-file limit)."""
FD_MARGIN = 128
"""fds a server needs besides the idle connections (listeners, loop, ping-pong: 50)."""
ACCEPT_TIMEOUT = 120.0
MUXIO_STEP = 2048
"""Connections opened at once, each step accepted before the next: under the listen
backlog, somaxconn, which `muxio serve` uses and the peers are given (`--backlog`)."""
WARM_UP_SECONDS = 1.0


@dataclass
class PointSample:
    messages_per_second: float
    server_cpu_us_per_message: float
    rss_bytes: int
    idle_held: int


@dataclass
class Point:
    idle: int
    samples: list[PointSample] = field(default_factory=list)
    baseline_rss: list[int] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(sample, attribute) for sample in self.samples))

    def rss_per_idle(self) -> float | None:
        """Median over rounds of (RSS at K - RSS at 0) / K, in bytes."""
        if self.idle == 0 or not self.baseline_rss:
            return None
        return float(statistics.median(
            (sample.rss_bytes - base) / self.idle
            for sample, base in zip(self.samples, self.baseline_rss, strict=True)))


@dataclass
class ScaleResult:
    target: str
    kind: str
    points: dict[int, Point] = field(default_factory=dict)

    def point(self, idle: int) -> Point:
        return self.points.setdefault(idle, Point(idle))


@dataclass
class WorkersResult:
    workers: int
    held: int
    messages_per_second_alone: float
    messages_per_second_held: float
    server_cpu_us_per_message_held: float
    rss_bytes: int
    rss_bytes_alone: int


class IdleHolders:
    """As many holder processes as `count` idle connections need, each from its own
    loopback source address."""

    def __init__(self, port: int, per_holder: int = PER_HOLDER) -> None:
        self.port = port
        self.per_holder = per_holder
        self.processes: list[subprocess.Popen[str]] = []
        self.held: list[int] = []

    def _holder(self, index: int) -> subprocess.Popen[str]:
        while len(self.processes) <= index:
            source = [] if not self.processes else ["--source",
                                                     f"127.0.0.{len(self.processes) + 1}"]
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "muxio.bench.idle_holder", "--port", str(self.port),
                 *source], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            self.held.append(0)
        return self.processes[index]

    def hold(self, count: int) -> None:
        """Bring the idle connections held, over every holder, to `count`."""
        holders = max(len(self.processes), -(-count // self.per_holder))
        for index in range(holders):
            want = max(0, min(self.per_holder, count - index * self.per_holder))
            holder = self._holder(index)
            if self.held[index] == want:
                continue
            commands = ["release", f"hold {want}"] if want < self.held[index] else [
                f"hold {want}"]
            answer = self._ask(holder, commands)
            if answer != f"held {want}":
                raise BenchError(f"the idle holder could not open {want} connections: "
                                 f"{answer}")
            self.held[index] = want

    def probe(self, count: int) -> None:
        """Send a byte on `count` of the held connections (spread over every holder and
        over each one's connections) and wait for each echo: they are still served."""
        total = sum(self.held)
        if not 0 <= count <= total:
            raise BenchError(f"cannot probe {count} of the {total} connections held")
        for holder, held in zip(self.processes, self.held, strict=True):
            share = min(held, -(-count * held // total)) if total else 0
            if share:
                answer = self._ask(holder, [f"probe {share}"])
                if answer != f"held {held}":
                    raise BenchError(f"idle connections probed: {answer}")

    @staticmethod
    def _ask(holder: subprocess.Popen[str], commands: list[str]) -> str:
        """Send `commands` to a holder; its answer to the last one."""
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("".join(f"{command}\n" for command in commands))
        holder.stdin.flush()
        answers = [holder.stdout.readline().strip() for _ in commands]
        return answers[-1] or "the holder exited"

    def close(self) -> None:
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self.processes.clear()
        self.held.clear()


def accepted(server: ServerProcess) -> int:
    """Connections the server (and its workers) has accepted and that are established:
    its sockets (from /proc/PID/fd) whose local port is the server's and whose state is
    ESTABLISHED (/proc/net/tcp). One still in the kernel's accept queue has no fd yet; a
    ping-pong connection its client closed is not ESTABLISHED any more."""
    inodes: set[int] = set()
    for pid in (server.process.pid, *descendants(server.process.pid)):
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    wanted = f":{server.port:04X}"
    # A set, not a count of lines: /proc/net/tcp is read in chunks, and a line can come
    # twice when the table changes between two reads (thousands of connects meanwhile).
    established: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if (fields[3] == "01" and fields[1].endswith(wanted)
                            and int(fields[9]) in inodes):
                        established.add(int(fields[9]))
        except OSError:
            continue
    return len(established)


def hold_accepted(server: ServerProcess, holders: IdleHolders, count: int, step: int,
                  timeout: float = ACCEPT_TIMEOUT) -> None:
    """Bring the idle connections to `count`, `step` more at a time, each step waited for
    until the server has accepted it: a burst larger than the server's listen backlog
    would overflow its queue (asyncio and uvloop listen with a backlog of 100 unless told), and a
    connection dropped there completes only after SYN-ACK retransmits, if at all."""
    held = sum(holders.held)
    if count <= held:
        holders.hold(count)
    while held < count:
        held = min(count, held + step)
        holders.hold(held)
        deadline = time.monotonic() + timeout
        while (now := accepted(server)) < held:
            if server.process.poll() is not None:
                raise BenchError(f"{server.target.name} exited with {held} connections "
                                 f"opened")
            if time.monotonic() > deadline:
                raise BenchError(f"{server.target.name}: {now} connections accepted, not "
                                 f"{held}, after {timeout:g} s")
            time.sleep(0.02)


def pingpong(server: ServerProcess, duration: float, cpus: set[int] | None) -> tuple[float,
                                                                                       float]:
    """(messages per second, server CPU us per message) of one ping-pong run."""
    load = echo_load(PINGPONG_CONNECTIONS, 100)
    cpu_before = server.cpu_seconds()
    started = time.monotonic()
    messages = load(server.port, duration, cpus)
    seconds = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    if messages <= 0:
        raise BenchError(f"{server.target.name}: the ping-pong completed no message")
    return messages / seconds, cpu / messages * 1e6


def warm_up(server: ServerProcess, duration: float, cpus: set[int] | None) -> None:
    """One unmeasured ping-pong: a fresh server's first run pays for lazy imports, the
    allocator's first arenas and (for workers) processes still starting, which would
    otherwise land on the K = 0 point."""
    pingpong(server, min(duration, WARM_UP_SECONDS), cpus)


def levels_for(target: Target, idle: Sequence[int], max_fd: int | None) -> list[int]:
    """The K values a target can take: all, or (select) those under its fd limit plus the
    largest that fits."""
    if max_fd is None:
        return list(idle)
    room = max_fd - FD_MARGIN
    fitting = [count for count in idle if count <= room]
    if any(count > room for count in idle) and room > 0 and room not in fitting:
        fitting.append(room)
    return sorted(fitting)


def sweep(target: Target, levels: Sequence[int], duration: float,
          result: ScaleResult, progress: Callable[[str], None]) -> None:
    """One round of one target: start it, then each K in turn."""
    server_cpus, load_cpus = cpu_sets()
    server = ServerProcess(target, free_port(), server_cpus)
    holders = IdleHolders(server.port)
    step = MUXIO_STEP
    try:
        warm_up(server, duration, load_cpus)
        baseline_rss = 0
        for idle in levels:
            progress(f"{target.name}: {idle} idle connections")
            hold_accepted(server, holders, idle, step)
            rss = server.rss_bytes()
            rate, cpu = pingpong(server, duration, load_cpus)
            if idle == 0:
                baseline_rss = server.rss_bytes()
            point = result.point(idle)
            point.samples.append(PointSample(rate, cpu, rss, idle))
            if idle:
                point.baseline_rss.append(baseline_rss)
    finally:
        holders.close()
        server.stop()


def run_scale(targets: Sequence[Target], idle: Sequence[int], *, rounds: int,
              duration: float, max_fds: dict[str, int | None],
              progress: Callable[[str], None]) -> list[ScaleResult]:
    limit = raise_open_file_limit()  # children (servers, holders) inherit it
    needed = max(idle) + FD_MARGIN
    if needed > limit:
        raise BenchError(f"{max(idle)} idle connections need an open-file limit of about "
                         f"{needed}; the hard limit here is {limit} (raise it with ulimit "
                         f"-Hn, or ask for fewer with --idle)")
    results = [ScaleResult(target.name, target.kind) for target in targets]
    for round_number in range(rounds):
        prefix = f"round {round_number + 1}/{rounds}: "

        def report(what: str, prefix: str = prefix) -> None:
            progress(prefix + what)

        for target, result in zip(targets, results, strict=True):
            levels = levels_for(target, idle, max_fds.get(target.name))
            sweep(target, levels, duration, result, report)
    return results


def run_workers(make_target: Callable[[int], Target], counts: Sequence[int], *,
                per_worker: int, duration: float,
                progress: Callable[[str], None]) -> list[WorkersResult]:
    """Connections held and msg/s with 1, 2, 4... workers (nothing pinned)."""
    raise_open_file_limit()
    results = []
    for count in counts:
        target = make_target(count)
        held = per_worker * count
        progress(f"{target.name}: holding {held} idle connections")
        server = ServerProcess(target, free_port(), None)
        holders = IdleHolders(server.port)
        try:
            warm_up(server, duration, None)
            alone, _cpu = pingpong(server, duration, None)
            rss_alone = server.rss_bytes()
            hold_accepted(server, holders, held, MUXIO_STEP)
            rss = server.rss_bytes()
            beside, cpu = pingpong(server, duration, None)
            results.append(WorkersResult(count, held, alone, beside, cpu, rss, rss_alone))
        finally:
            holders.close()
            server.stop()
    return results


def to_json(results: Sequence[ScaleResult], workers: Sequence[WorkersResult],
            meta: dict[str, Any]) -> str:
    return json.dumps({
        "workload": "scale", "meta": meta,
        "results": [{
            "target": result.target, "kind": result.kind,
            "points": [{
                "idle": point.idle,
                "median_messages_per_second": point.median("messages_per_second"),
                "median_server_cpu_us_per_message": point.median(
                    "server_cpu_us_per_message"),
                "median_rss_bytes": point.median("rss_bytes"),
                "rss_bytes_per_idle_connection": point.rss_per_idle(),
                "samples": [asdict(sample) for sample in point.samples],
                "baseline_rss_bytes": point.baseline_rss,
            } for point in sorted(result.points.values(), key=lambda p: p.idle)],
        } for result in results],
        "workers": [asdict(entry) for entry in workers],
    }, indent=2)


def plot(results: Sequence[ScaleResult], workers: Sequence[WorkersResult], path: Path,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 4 if workers else 3
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.8))
    rate_axis, cpu_axis, rss_axis = axes[0], axes[1], axes[2]
    for result in results:
        points = sorted(result.points.values(), key=lambda p: p.idle)
        xs = [point.idle for point in points]
        style = "-o" if result.kind == "muxio" else "--s"
        rate_axis.plot(xs, [p.median("messages_per_second") for p in points], style,
                       label=result.target)
        cpu_axis.plot(xs, [p.median("server_cpu_us_per_message") for p in points], style,
                      label=result.target)
    for axis, label in ((rate_axis, "ping-pong msg/s (50 connections)"),
                        (cpu_axis, "server CPU µs per message")):
        axis.set_xscale("symlog", linthresh=1000)
        axis.set_xlabel("idle connections held (log scale above 1000)")
        axis.set_title(label)
        axis.grid(True, which="both", alpha=0.3)
    rate_axis.legend(fontsize=8)
    names, per_idle = [], []
    for result in results:
        largest = max(result.points)
        value = result.points[largest].rss_per_idle()
        if value is not None:
            names.append(f"{result.target}\n(K={largest})")
            per_idle.append(value / 1024)
    rss_axis.bar(names, per_idle, color=["tab:blue" if "muxio" in name else "tab:gray"
                                         for name in names])
    rss_axis.set_title("RSS per idle connection (kB)")
    rss_axis.tick_params(axis="x", rotation=35, labelsize=7)
    if workers:
        axis = axes[3]
        labels = [f"{entry.workers} workers\n{entry.held:,} held" for entry in workers]
        axis.bar(labels, [entry.messages_per_second_held for entry in workers],
                 color="tab:blue")
        axis.set_title("epoll workers: msg/s beside the held connections")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
