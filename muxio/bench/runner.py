"""Run a workload against every target (muxio backends and peer loops) and compare.

Each target's server runs in its own process, pinned to one CPU; the load generator runs
in another process, pinned to the other CPU when the machine has two. When a target runs
several worker processes (`--workers`), nothing is pinned: its workers need every CPU, and
so the load generator competes with them (say so when quoting such figures). Rounds are
interleaved (A B C, A B C, ...) so a drift in machine speed hits every target alike, and
each figure is the median over rounds. Server CPU per operation comes from the server
process's own CPU time and that of its descendants (/proc/PID/stat: a supervisor's
workers, nsd's server processes), so it does not depend on how fast the load generator is.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from muxio.errors import MuxioError


class BenchError(MuxioError):
    """A server or load generator could not be started or did not report."""


@dataclass(frozen=True)
class Target:
    """One column of the comparison: a muxio backend or a peer loop hosting the handler."""

    name: str
    argv: tuple[str, ...]
    kind: str  # "muxio" or "peer"
    host: str = ""
    """The loop underneath ('muxio/epoll', 'asyncio'...): a target and its baseline share it."""
    baseline: bool = False
    """Hosts the minimal protocol instead of the handler (`--protocol minimal`)."""
    workers: int = 1
    """Worker processes (`muxio serve --workers`); > 1 turns pinning off for the run."""
    command: Callable[[int], Sequence[str]] | None = None
    """The command line for a port, for servers that do not take `--port` (nsd reads it
    from a config file); default: `argv` + `--port PORT`."""
    ready: Callable[[int], bool] | None = None
    """A probe of the port for servers that print no `serving` line (peers such as nsd);
    default: wait for that line on stdout."""

    def command_line(self, port: int) -> list[str]:
        if self.command is not None:
            return list(self.command(port))
        return [*self.argv, "--port", str(port)]


@dataclass(frozen=True)
class Workload:
    """A service plus a load generator that returns the number of completed operations."""

    name: str
    service: str
    unit: str
    description: str
    load: Callable[[int, float, set[int] | None], int]
    service_args: tuple[str, ...] = ()
    targets: Callable[[Sequence[str], Sequence[str]], list[Target]] | None = None
    """Builds the targets from (muxio backends, peers) for workloads that are not a
    muxio service hosted on peer loops (the asyncio-app family: muxio.aio per backend).
    None: muxio's own server per backend, the same handler on each peer."""
    peers: tuple[str, ...] | None = None
    """The peers this workload can run on (None: every peer the CLI knows)."""


@dataclass
class Sample:
    ops_per_second: float
    server_cpu_us_per_op: float
    operations: int
    seconds: float
    server_user_us_per_op: float = 0.0
    """The user-mode part of `server_cpu_us_per_op` (the rest is system time)."""
    server_system_us_per_op: float = 0.0


@dataclass
class TargetResult:
    target: str
    kind: str
    samples: list[Sample] = field(default_factory=list)
    host: str = ""
    baseline: bool = False

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(sample, attribute) for sample in self.samples))

    def spread(self, attribute: str) -> tuple[float, float]:
        values = [getattr(sample, attribute) for sample in self.samples]
        return min(values), max(values)


BASELINE_SUFFIX = " (minimal)"
"""Appended to a host's name for the column that hosts the minimal protocol."""


def muxio_target(backend: str, service: str, extra: Sequence[str] = (), *,
                 baseline: bool = False, workers: int = 1) -> Target:
    """`muxio serve SERVICE` on `backend`. `baseline`: the service's minimal protocol
    (`--protocol minimal`); `workers` > 1: that many worker processes, named e.g.
    'muxio/epoll x2'."""
    host = f"muxio/{backend}" + (f" x{workers}" if workers > 1 else "")
    flags = ("--protocol", "minimal") if baseline else ()
    more = ("--workers", str(workers)) if workers > 1 else ()
    return Target(host + (BASELINE_SUFFIX if baseline else ""),
                  (sys.executable, "-m", "muxio", "serve", service, "--host", "127.0.0.1",
                   "--backend", backend, *more, *extra, *flags), "muxio", host, baseline,
                  workers)


def peer_target(loop: str, service: str, extra: Sequence[str] = (), *,
                baseline: bool = False) -> Target:
    flags = ("--protocol", "minimal") if baseline else ()
    return Target(loop + (BASELINE_SUFFIX if baseline else ""),
                  (sys.executable, "-m", "adapters", "--loop", loop, "--service", service,
                   "--host", "127.0.0.1", *extra, *flags), "peer", loop, baseline)


def handler_cost(results: Sequence[TargetResult], result: TargetResult) -> float | None:
    """Server CPU µs per operation that `result`'s handler adds over the minimal protocol
    on the same host in the same run (medians); None without such a baseline."""
    if result.baseline:
        return None
    for other in results:
        if other.baseline and other.host == result.host:
            return (result.median("server_cpu_us_per_op")
                    - other.median("server_cpu_us_per_op"))
    return None


def aio_target(loop: str, app: str, backend: str | None = None) -> Target:
    """An asyncio application (muxio/bench/aio_servers.py) on asyncio, uvloop, or
    muxio.aio on `backend`: the same app code, only the event loop differs."""
    argv = [sys.executable, "-m", "muxio.bench.aio_servers", "--app", app, "--loop", loop,
            "--host", "127.0.0.1"]
    if backend is not None:
        argv += ["--backend", backend]
    name = f"muxio.aio/{backend}" if loop == "muxio" else loop
    return Target(name, tuple(argv), "muxio" if loop == "muxio" else "peer")


def cpu_sets() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs): one each when there are two or more."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(available) < 2:
        return None, None
    return {available[0]}, {available[1]}


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, from /proc (clock-tick resolution)."""
    user, system = process_cpu_times(pid)
    return user + system


def process_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc/PID/stat (utime, stime)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def terminate(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it is still running after `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (a supervisor's workers, nsd's forks)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def tree_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `pid` and of its live descendants."""
    user = system = 0.0
    for current in (pid, *descendants(pid)):
        try:
            more_user, more_system = process_cpu_times(current)
        except OSError:
            continue  # exited meanwhile
        user += more_user
        system += more_system
    return user, system


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and of its live descendants (VmRSS), in bytes."""
    total = 0
    for current in (pid, *descendants(pid)):
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin a started process to `cpus` (no-op when pinning is not possible here)."""
    if cpus is not None:
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass


class ServerProcess:
    """A server under test: started, waited for ('serving ... on HOST:PORT'), stopped."""

    def __init__(self, target: Target, port: int, cpus: set[int] | None) -> None:
        self.target = target
        self.port = port
        argv = target.command_line(port)
        # stderr goes to a file, not a pipe: a chatty server must never block on a pipe
        # nobody reads while it is being measured.
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE if target.ready is None else subprocess.DEVNULL,
            stderr=self._stderr, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        pin(self.process.pid, cpus)
        if target.ready is not None:
            self._wait_ready(target.ready)
            return
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until the server says it serves
        if "serving" not in line:
            self.process.wait(timeout=20) if self.process.poll() is None else None
            self._stderr.seek(0)
            stderr = self._stderr.read().strip().splitlines()
            self.stop()
            # The server's own one-line error says what went wrong; a traceback's last
            # line does too.
            reason = stderr[-1] if stderr else line.strip() or "no output"
            raise BenchError(f"{target.name} did not start: {reason}")

    def _wait_ready(self, ready: Callable[[int], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._stderr.seek(0)
                stderr = self._stderr.read().strip().splitlines()
                self.stop()
                reason = stderr[-1] if stderr else f"no answer on port {self.port}"
                raise BenchError(f"{self.target.name} did not start: {reason}")

    def cpu_seconds(self) -> float:
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) seconds of the server and its descendants (workers)."""
        return tree_cpu_times(self.process.pid)

    def rss_bytes(self) -> int:
        return tree_rss_bytes(self.process.pid)

    def stop(self) -> None:
        terminate(self.process, timeout=20)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if not self._stderr.closed:
            self._stderr.close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_comparison(workload: Workload, targets: Sequence[Target], *, rounds: int,
                   duration: float, progress: Callable[[str], None] | None = None,
                   ) -> list[TargetResult]:
    """Start every target once, then run `rounds` interleaved load runs against each."""
    server_cpus, load_cpus = cpu_sets()
    if any(target.workers > 1 for target in targets):
        server_cpus = load_cpus = None  # workers need every CPU: nothing is pinned
    servers: list[ServerProcess] = []
    results = [TargetResult(target.name, target.kind, host=target.host or target.name,
                            baseline=target.baseline) for target in targets]
    try:
        for target in targets:
            servers.append(ServerProcess(target, free_port(), server_cpus))
        for round_number in range(rounds):
            for server, result in zip(servers, results, strict=True):
                if progress is not None:
                    progress(f"round {round_number + 1}/{rounds}: {server.target.name}")
                user_before, system_before = server.cpu_times()
                started = time.monotonic()
                operations = workload.load(server.port, duration, load_cpus)
                seconds = time.monotonic() - started
                user_after, system_after = server.cpu_times()
                user, system = user_after - user_before, system_after - system_before
                if operations <= 0:
                    raise BenchError(f"{server.target.name}: the load generator completed "
                                     f"no {workload.unit}")
                result.samples.append(Sample(
                    operations / seconds, (user + system) / operations * 1e6, operations,
                    seconds, user / operations * 1e6, system / operations * 1e6))
    finally:
        for server in servers:
            server.stop()
    return results


def to_json(workload: Workload, results: Sequence[TargetResult], reference: str,
            meta: dict[str, Any]) -> str:
    return json.dumps({
        "workload": workload.name, "unit": workload.unit, "reference": reference,
        "meta": meta,
        "results": [{"target": r.target, "kind": r.kind, "host": r.host,
                     "baseline": r.baseline,
                     "handler_us_per_op": handler_cost(results, r),
                     "median_ops_per_second": r.median("ops_per_second"),
                     "median_server_cpu_us_per_op": r.median("server_cpu_us_per_op"),
                     "median_server_user_us_per_op": r.median("server_user_us_per_op"),
                     "median_server_system_us_per_op": r.median("server_system_us_per_op"),
                     "samples": [asdict(s) for s in r.samples]} for r in results],
    }, indent=2)


def plot(workload: Workload, results: Sequence[TargetResult], path: Path | BinaryIO) -> None:
    """Two bar charts side by side: rate (higher is better) and server CPU per operation
    (lower is better); muxio's backends in blue, the peers in grey. PNG to `path`."""
    plot_named(workload.name, workload.unit, results, path)


def plot_named(name: str, unit: str, results: Sequence[TargetResult],
               path: Path | BinaryIO) -> None:
    """`plot` for a workload known by its name and unit (e.g. read back from JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.target for r in results]
    palette = {("muxio", False): "tab:blue", ("muxio", True): "lightsteelblue",
               ("peer", False): "tab:gray", ("peer", True): "lightgray"}
    colors = [palette[(r.kind, r.baseline)] for r in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.bar(names, [r.median("ops_per_second") for r in results], color=colors)
    left.set_title(f"{name}: {unit}/s (higher is better)")
    right.bar(names, [r.median("server_cpu_us_per_op") for r in results], color=colors)
    right.set_title(f"server CPU µs per {unit} (lower is better)")
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=35)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
