"""`muxio bench models`: a thread per connection beside the event loops, from 50 to 10 000
connections. Threads or an event loop, and which poller?

Theory of operation
-------------------
One *cell* is one server (a target) under one load (echo or HTTP) at one number of
active connections, with `idle` more connections held open and silent beside them. Each
cell starts a fresh server process, so its memory figures are its own: RSS is sampled from
/proc while the load runs (the peak), and RSS per connection is (peak - the RSS of the
server before any client came) / (active + idle). The number of OS threads is sampled the
same way. The server is pinned to one CPU; the load generator, the idle holder and `perf`
to the other.

Targets: every muxio backend (through `muxio.bench.stats_server`, which prints the poller
statistics on SIGUSR1), asyncio and uvloop hosting the same handler (`python -m adapters`),
and the thread host (`--loop threads`: blocking sockets, a thread per connection, the
stack size stated in the results). Every server gets the same listen backlog (somaxconn).
A target is skipped, with the reason, where the connections would not fit its fd limit
(select: fds < 1024) or the process's.

The measured window. The load generator (muxio.bench.loadgen_echo, loadgen_http: one
message or keep-alive request in flight per connection) opens every connection first and
says so; the runner waits until the server has accepted them all (its fd count, and for the
thread host its thread count), opens the window and tells the generator to go. The window
lasts `duration` seconds, so accepting 10 000 connections is not mixed into the rate (wrk
opens its connections inside its window: at thousands of connections its rate measures
accepting). Over the window: server CPU time (/proc/PID/stat), syscalls of every server
thread (`perf stat -e raw_syscalls:sys_enter -p PID`, when perf works here), and for muxio
the poller's wakeups (polls) and readiness events. Each is divided by the operations the
load generator completed in the window. Latency: the load generator's round-trip
percentiles over the window.

Rounds are interleaved (every cell of round 1, then round 2...) so that drift of a shared
machine hits every target alike; the report shows medians.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from muxio.bench.runner import (
    BenchError,
    cpu_sets,
    free_port,
    pin,
    process_cpu_seconds,
    terminate,
)

MODEL_WORKLOADS = ("echo", "http")
DEFAULT_COUNTS = (50, 500, 5000, 10000)
DEFAULT_IDLE = 500
DEFAULT_PEERS = ("asyncio", "uvloop", "threads")
DEFAULT_THREAD_STACK_KIB = 512
"""Stack of each thread-host thread, passed explicitly (--stack-size) so that the results
state it: virtual size; RSS counts only the stack pages a thread touches."""
FD_MARGIN = 32
"""fds a server holds besides its connections (stdio, listener, poller, pipes)."""
SAMPLE_INTERVAL = 0.1
START_TIMEOUT = 60.0
STOP_TIMEOUT = 120.0

SERVICE_ARGS: dict[str, tuple[str, ...]] = {
    "echo": (),
    # Idle connections must stay open for the whole cell on every host.
    "http": ("--header-timeout", "600", "--keepalive-timeout", "600"),
}


@dataclass(frozen=True)
class ModelTarget:
    """One server in the comparison."""

    name: str  # "muxio/epoll", "asyncio", "uvloop", "threads"
    model: str  # "event loop" or "thread per connection"
    kind: str  # "muxio" or "peer"
    fd_limit: int | None = None  # highest fd + 1 its poller can watch (select: 1024)
    thread_stack_kib: int | None = None

    def argv(self, service: str, port: int, backlog: int) -> list[str]:
        common = ["--host", "127.0.0.1", "--port", str(port), "--backlog", str(backlog)]
        if self.kind == "muxio":
            backend = self.name.split("/", 1)[1]
            return [sys.executable, "-m", "muxio.bench.stats_server", service, "--backend",
                    backend, *common, *SERVICE_ARGS[service]]
        extra = ["--stack-size", str(self.thread_stack_kib)] if self.name == "threads" else []
        return [sys.executable, "-m", "adapters", "--loop", self.name, "--service", service,
                *common, *extra, *SERVICE_ARGS[service]]


def model_targets(backends: Sequence[str], peers: Sequence[str],
                  thread_stack_kib: int) -> list[ModelTarget]:
    from muxio.pollers.registry import default_registry

    registry = default_registry()
    targets = []
    for peer in peers:
        targets.append(ModelTarget(
            peer, "thread per connection" if peer == "threads" else "event loop", "peer",
            thread_stack_kib=thread_stack_kib if peer == "threads" else None))
    for backend in backends:
        limit = registry.get(backend).capabilities.max_fd  # UnknownBackendError names them
        targets.append(ModelTarget(f"muxio/{backend}", "event loop", "muxio", limit))
    return targets


@dataclass
class Cell:
    """One run: a target under one workload at one connection count (one round)."""

    workload: str
    target: str
    connections: int
    idle: int
    round: int
    ok: bool = False
    skipped: str | None = None
    error: str | None = None
    operations: int = 0
    ops_per_second: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu_us_per_op: float | None = None
    server_cpu_percent: float | None = None
    """Share of its CPU the server used in the window: on a shared machine the rate is
    bounded by this share, so compare CPU per operation, not rates, across targets."""
    rss_base_kib: int = 0
    rss_peak_kib: int = 0
    rss_per_connection_kib: float | None = None
    threads_peak: int = 0
    syscalls_per_op: float | None = None
    polls_per_op: float | None = None
    events_per_poll: float | None = None


@dataclass
class Plan:
    workloads: Sequence[str]
    counts: Sequence[int]
    idle: int
    targets: Sequence[ModelTarget]
    rounds: int
    duration: float
    meta: dict[str, Any] = field(default_factory=dict)


# -- processes ------------------------------------------------------------------------------

_children: list[subprocess.Popen[Any]] = []
"""Every process a cell started; `reap()` kills what is left when a cell ends early."""


def spawn(argv: Sequence[str], cpus: set[int] | None, **options: Any) -> subprocess.Popen[Any]:
    """Start a child for the current cell, pinned to `cpus`."""
    process = subprocess.Popen(argv, **options)
    _children.append(process)
    pin(process.pid, cpus)
    return process


def reap() -> None:
    """Kill (and wait for) every child of the cell still running: an interrupted or
    failed cell leaves no server, load generator or perf behind."""
    while _children:
        process = _children.pop()
        if process.poll() is None:
            process.kill()
            process.wait()



class LineReader:
    """Lines from a child's stdout with a deadline (no read ever blocks past it)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no output line within {timeout:g} s")
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    raise BenchError("the process ended without the expected line")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")


def proc_status(pid: int) -> tuple[int, int]:
    """(VmRSS in KiB, Threads) of a process, from /proc/PID/status."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


class Sampler:
    """Peak RSS and thread count of a process, sampled in a background thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_peak = 0
        self.threads_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(SAMPLE_INTERVAL):
                return

    def sample(self) -> None:
        try:
            rss, threads = proc_status(self.pid)
        except OSError:
            return
        self.rss_peak = max(self.rss_peak, rss)
        self.threads_peak = max(self.threads_peak, threads)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class Server:
    """A server under test, started fresh for one cell."""

    def __init__(self, target: ModelTarget, service: str, cpus: set[int] | None,
                 backlog: int) -> None:
        self.target = target
        self.port = free_port()
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self.process = spawn(
            target.argv(service, self.port, backlog), cpus, stdout=subprocess.PIPE,
            stderr=self._stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.process.stdout is not None
        self._lines = LineReader(self.process.stdout)
        try:
            line = self._lines.readline(START_TIMEOUT)
        except BenchError as exc:
            line = str(exc)
        if "serving" not in line:
            self.stop()
            raise BenchError(f"{target.name} did not start: {line.strip()} "
                             f"{self.stderr_tail()}")
        self.base_fds = open_fds(self.pid)
        self.base_threads = proc_status(self.pid)[1]

    @property
    def pid(self) -> int:
        return self.process.pid

    def poller_statistics(self) -> dict[str, Any] | None:
        """The poller's counters now (muxio targets only)."""
        if self.target.kind != "muxio":
            return None
        self.process.send_signal(signal.SIGUSR1)
        stats: dict[str, Any] = json.loads(self._lines.readline(START_TIMEOUT))
        return stats

    def stderr_tail(self) -> str:
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-1500:].strip()

    def stop(self) -> None:
        terminate(self.process, timeout=STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if not self._stderr.closed:
            self._stderr.close()


class IdleHolder:
    """`muxio.bench.idle_holder`: K silent connections for the length of a cell."""

    def __init__(self, port: int, connections: int, cpus: set[int] | None) -> None:
        self.process = spawn(
            [sys.executable, "-m", "muxio.bench.idle_holder", "--port", str(port),
             "--connections", str(connections)], cpus, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None
        try:
            line = LineReader(self.process.stdout).readline(START_TIMEOUT)
        except BenchError as exc:
            self.close()
            raise BenchError(f"the idle holder could not open {connections} connections: "
                             f"{exc}") from None
        if json.loads(line).get("held") != connections:
            self.close()
            raise BenchError(f"the idle holder reported {line!r}")

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


_perf_checked: list[str | None] = []
PERF_EVENT = "raw_syscalls:sys_enter"


def perf_unavailable() -> str | None:
    """None if `perf stat` can count syscall tracepoints here, with a control fifo,
    else why not."""
    if not _perf_checked:
        perf = shutil.which("perf")
        if perf is None:
            reason: str | None = "perf is not installed (apt-get install linux-perf)"
        else:
            with tempfile.TemporaryDirectory() as directory:
                ctl, ack = os.path.join(directory, "ctl"), os.path.join(directory, "ack")
                os.mkfifo(ctl)
                os.mkfifo(ack)
                probe = subprocess.run(
                    [perf, "stat", "-x,", "-e", PERF_EVENT, "-D", "-1", "--control",
                     f"fifo:{ctl},{ack}", "--", "true"], capture_output=True, text=True,
                    check=False, timeout=60)
            counted = re.search(r"^(\d+|<not counted>),", probe.stderr, re.MULTILINE)
            reason = None if probe.returncode == 0 and counted else (
                f"perf cannot count {PERF_EVENT} with a control fifo here "
                f"(perf_event_paranoid, tracefs, or perf older than 5.10): "
                f"{probe.stderr.strip()[-200:]}")
        _perf_checked.append(reason)
    return _perf_checked[0]


class SyscallCounter:
    """Syscalls of every thread of a process, counted only between enable() and
    disable(): `perf stat -e raw_syscalls:sys_enter -p PID -D -1 --control fifo:...`.

    It attaches when the server has one thread, before any client: perf then follows every
    thread created later (the counters are inherited), while attaching to a process that
    already runs 10 000 threads would take longer than the window itself."""

    def __init__(self, pid: int, cpus: set[int] | None) -> None:
        self._directory = tempfile.mkdtemp(prefix="muxio-perf-")
        ctl, ack = (os.path.join(self._directory, name) for name in ("ctl", "ack"))
        os.mkfifo(ctl)
        os.mkfifo(ack)
        self._ack = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
        self._ctl = -1
        self.process = spawn(
            ["perf", "stat", "-x,", "-e", PERF_EVENT, "-D", "-1", "--control",
             f"fifo:{ctl},{ack}", "-p", str(pid)], cpus,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + START_TIMEOUT
        while self._ctl < 0:
            try:
                self._ctl = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: perf has not opened its end yet
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise BenchError("perf stat did not start its control fifo") from None
                time.sleep(0.01)

    def _command(self, word: str) -> None:
        """Send enable/disable and wait for perf's ack (counting has switched)."""
        os.write(self._ctl, f"{word}\n".encode())
        ready, _, _ = select.select([self._ack], [], [], START_TIMEOUT)
        if not ready:
            raise BenchError(f"perf stat did not acknowledge {word!r}")
        os.read(self._ack, 64)

    def enable(self) -> None:
        self._command("enable")

    def disable(self) -> None:
        self._command("disable")

    def stop(self) -> int | None:
        """End perf; the syscalls counted while enabled (None if perf did not say)."""
        self.process.send_signal(signal.SIGINT)
        try:
            _, stderr = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            stderr = ""
        self.close()
        counted = re.search(r"^(\d+),", stderr, re.MULTILINE)
        return int(counted.group(1)) if counted else None

    def close(self) -> None:
        """Release the fifos (idempotent; stop() does it too)."""
        for fd in (self._ctl, self._ack):
            if fd >= 0:
                os.close(fd)
        self._ctl = self._ack = -1
        shutil.rmtree(self._directory, ignore_errors=True)


# -- one cell ---------------------------------------------------------------------------------


@dataclass
class Window:
    """Counters at the start of the measured window."""

    started: float
    cpu: float
    polls: dict[str, Any] | None
    perf: SyscallCounter | None


def _open_window(server: Server, perf: SyscallCounter | None) -> Window:
    if perf is not None:
        perf.enable()
    return Window(time.monotonic(), process_cpu_seconds(server.pid),
                  server.poller_statistics(), perf)


def _close_window(cell: Cell, server: Server, window: Window,
                  ops_per_second: float) -> None:
    seconds = time.monotonic() - window.started
    cpu = process_cpu_seconds(server.pid) - window.cpu
    if window.perf is not None:
        window.perf.disable()
    polls = server.poller_statistics()
    syscalls = window.perf.stop() if window.perf is not None else None
    operations = ops_per_second * seconds
    if operations <= 0:
        return
    cell.server_cpu_us_per_op = cpu / operations * 1e6
    cell.server_cpu_percent = cpu / seconds * 100
    if syscalls is not None:
        cell.syscalls_per_op = syscalls / operations
    if polls is not None and window.polls is not None:
        wakeups = polls["polls"] - window.polls["polls"]
        cell.polls_per_op = wakeups / operations
        if wakeups:
            cell.events_per_poll = (polls["events"] - window.polls["events"]) / wakeups


LOADERS = {"echo": ("muxio.bench.loadgen_echo", ("--connect-first", "--wait-go")),
           "http": ("muxio.bench.loadgen_http", ("--wait-go",))}
"""The load generator of each workload: both open every connection first, say so, wait for
"go" on stdin, then ping-pong (one message or request in flight per connection) for the
duration."""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until_accepted(server: Server, connections: int, timeout: float) -> None:
    """Wait until the server holds `connections` more fds than when it started (and, for
    the thread host, as many more threads): a client's connect() returns before the server
    accepts, and accepting (and starting threads) must not leak into the measured window."""
    deadline = time.monotonic() + timeout
    threaded = server.target.name == "threads"
    while True:
        fds = open_fds(server.pid) - server.base_fds
        threads = proc_status(server.pid)[1] - server.base_threads if threaded else fds
        if fds >= connections and threads >= connections:
            return
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise BenchError(f"{server.target.name} accepted {fds} of {connections} "
                             f"connections within {timeout:g} s")
        time.sleep(0.02)


def _run_load(cell: Cell, server: Server, duration: float,
              load_cpus: set[int] | None, perf: SyscallCounter | None) -> None:
    module, options = LOADERS[cell.workload]
    loader = spawn(
        [sys.executable, "-m", module, "--port", str(server.port), "--connections",
         str(cell.connections), "--duration", str(duration), *options], load_cpus,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert loader.stdin is not None and loader.stdout is not None
    assert loader.stderr is not None
    lines = LineReader(loader.stdout)
    window = None
    try:
        settle = START_TIMEOUT + cell.connections / 100
        lines.readline(settle)  # {"connected": C}
        wait_until_accepted(server, cell.idle + cell.connections, settle)
        window = _open_window(server, perf)
        loader.stdin.write(b"go\n")
        loader.stdin.flush()
        # The generator's clock started with its "connected" line: close the server's
        # window after the same duration, before the connections are torn down.
        time.sleep(max(0.0, window.started + duration - time.monotonic()))
        result = json.loads(lines.readline(duration + START_TIMEOUT))
    except (BenchError, ValueError) as exc:
        loader.kill()
        loader.wait()
        raise BenchError(f"{cell.workload} load generator: {exc}; "
                         f"{loader.stderr.read().decode(errors='replace')[-500:]}") from None
    finally:
        if loader.poll() is None:
            loader.wait(STOP_TIMEOUT)
        loader.stdin.close()
        loader.stdout.close()
        loader.stderr.close()
    cell.operations = int(result["messages"])
    cell.ops_per_second = cell.operations / float(result["seconds"])
    cell.p50_ms, cell.p99_ms = result.get("p50_ms"), result.get("p99_ms")
    _close_window(cell, server, window, cell.ops_per_second)


def run_cell(cell: Cell, target: ModelTarget, duration: float, backlog: int) -> None:
    """Measure one cell (fills `cell`; a failure is recorded in `cell.error`)."""
    server_cpus, load_cpus = cpu_sets()
    try:
        server = Server(target, cell.workload, server_cpus, backlog)
    except BenchError as exc:
        cell.error = str(exc)
        return
    holder = perf = None
    try:
        cell.rss_base_kib, _ = proc_status(server.pid)
        if perf_unavailable() is None:
            perf = SyscallCounter(server.pid, load_cpus)  # before any thread but one
        with Sampler(server.pid) as sampler:
            if cell.idle:
                holder = IdleHolder(server.port, cell.idle, load_cpus)
            _run_load(cell, server, duration, load_cpus, perf)
        cell.rss_peak_kib = sampler.rss_peak
        cell.threads_peak = sampler.threads_peak
        cell.rss_per_connection_kib = (cell.rss_peak_kib - cell.rss_base_kib) / (
            cell.connections + cell.idle)
        # Zero operations in the window is a result (e.g. 10 000 threads still being
        # started), not a failure: the rate is 0 and the per-operation figures are unknown.
        cell.ok = True
    except (BenchError, OSError) as exc:
        cell.error = f"{exc} {server.stderr_tail()}".strip()
    finally:
        try:
            if holder is not None:
                holder.close()
            server.stop()
        finally:
            reap()
            if perf is not None:
                perf.close()


# -- the plan ---------------------------------------------------------------------------------


def fd_budget() -> int:
    """The fd limit children get: the soft limit, raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def skip_reason(target: ModelTarget, connections: int, idle: int, nofile: int) -> str | None:
    needed = connections + idle + FD_MARGIN
    if target.fd_limit is not None and needed > target.fd_limit:
        return (f"{target.name} watches only fds < {target.fd_limit}; {connections} + "
                f"{idle} idle connections need about {needed}")
    if needed > nofile:
        return (f"the fd limit is {nofile} (ulimit -n); {connections} + {idle} idle "
                f"connections need about {needed}")
    return None


def run_plan(plan: Plan, backlog: int,
             progress: Callable[[str], None] | None = None) -> list[Cell]:
    """Every cell of every round, interleaved round by round."""
    nofile = fd_budget()
    cells: list[Cell] = []
    for round_number in range(1, plan.rounds + 1):
        for workload in plan.workloads:
            for connections in plan.counts:
                for target in plan.targets:
                    cell = Cell(workload, target.name, connections, plan.idle, round_number)
                    cells.append(cell)
                    if progress is not None:
                        progress(f"round {round_number}/{plan.rounds}: {workload} "
                                 f"{connections} on {target.name}")
                    cell.skipped = skip_reason(target, connections, plan.idle, nofile)
                    if cell.skipped is None:
                        run_cell(cell, target, plan.duration, backlog)
    return cells


# -- medians --------------------------------------------------------------------------------

NUMERIC = ("ops_per_second", "p50_ms", "p99_ms", "server_cpu_us_per_op",
           "server_cpu_percent", "rss_base_kib",
           "rss_peak_kib", "rss_per_connection_kib", "threads_peak", "syscalls_per_op",
           "polls_per_op", "events_per_poll")
RANGED = ("ops_per_second", "server_cpu_us_per_op")


@dataclass
class Summary:
    """The median over rounds of one (workload, target, connections)."""

    workload: str
    target: str
    connections: int
    idle: int
    rounds_ok: int
    skipped: str | None
    errors: list[str]
    medians: dict[str, float | None]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    """(min, max) over the rounds of the figures a shared machine moves most."""

    def get(self, name: str) -> float | None:
        return self.medians.get(name)


def summarise(cells: Sequence[Cell]) -> list[Summary]:
    keys: dict[tuple[str, str, int], list[Cell]] = {}
    for cell in cells:
        keys.setdefault((cell.workload, cell.target, cell.connections), []).append(cell)
    summaries = []
    for (workload, target, connections), group in keys.items():
        good = [cell for cell in group if cell.ok]
        for cell in good:  # results written before the field existed: derive it
            if cell.server_cpu_percent is None and cell.server_cpu_us_per_op is not None:
                cell.server_cpu_percent = cell.ops_per_second * cell.server_cpu_us_per_op / 1e4
        medians: dict[str, float | None] = {}
        ranges: dict[str, tuple[float, float]] = {}
        for name in NUMERIC:
            values = [getattr(cell, name) for cell in good if getattr(cell, name) is not None]
            medians[name] = float(statistics.median(values)) if values else None
            if values and name in RANGED:
                ranges[name] = (float(min(values)), float(max(values)))
        summaries.append(Summary(
            workload, target, connections, group[0].idle, len(good), group[0].skipped,
            sorted({cell.error for cell in group if cell.error}), medians, ranges))
    return summaries


def to_json(plan: Plan, cells: Sequence[Cell], summaries: Sequence[Summary],
            lines: dict[str, str]) -> str:
    return json.dumps({
        "benchmark": "models", "meta": plan.meta,
        "targets": [asdict(target) for target in plan.targets],
        "summary_lines": lines,
        "medians": [asdict(summary) for summary in summaries],
        "cells": [asdict(cell) for cell in cells],
    }, indent=2)


def from_json(text: str) -> tuple[Plan, list[Cell], list[Summary]]:
    """The plan, cells and medians (recomputed from the cells) of a models.json, to redraw
    its charts and tables."""
    data = json.loads(text)
    if data.get("benchmark") != "models":
        raise BenchError("not a models.json written by `muxio bench models`")
    meta = data["meta"]
    targets = [ModelTarget(**target) for target in data["targets"]]
    cells = [Cell(**cell) for cell in data["cells"]]
    workloads = list(dict.fromkeys(cell.workload for cell in cells))
    plan = Plan(workloads, meta["counts"], meta["idle"], targets, meta["rounds"],
                meta["duration"], meta)
    return plan, cells, summarise(cells)
