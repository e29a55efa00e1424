"""HTTP hello endpoint under wrk: every muxio backend against asyncio, same handler.

    python benchmarks/http_wrk.py                       # wrk -t1 -c50 -d10s, 3 rounds
    python benchmarks/http_wrk.py --rounds 5 --backends epoll,poll --json http.json

Each server is a separate process (`muxio serve http --backend B`, and
`python -m adapters --loop asyncio --service http` for the same handler on asyncio's default
loop), pinned to one CPU; wrk is pinned to another. Rounds are interleaved (asyncio, then
every backend, then again) so drift in machine speed hits every target alike; the table
shows medians over rounds and ratios to asyncio measured in the same run:

- req/s: wrk's Requests/sec (higher is better);
- p99: wrk's 99th percentile latency (lower is better);
- CPU/req: the server process's user+system CPU time over the run divided by the requests
  completed (lower is better); unlike req/s it does not depend on how fast wrk is.

When wrk itself saturates its CPU, every fast server shows about the same req/s and the
req/s ratios shrink toward 1: CPU/req is then the figure that tells servers apart.
A run with socket errors (wrk's "Socket errors" line) or non-2xx responses is an error.
This is a measurement, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

from muxio.bench.runner import (
    BenchError,
    ServerProcess,
    Target,
    cpu_sets,
    free_port,
    muxio_target,
    peer_target,
    pin,
)
from muxio.testing.matrix import matrix_backends

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "asyncio"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Run:
    requests_per_second: float
    p99_ms: float
    cpu_us_per_request: float
    requests: int


def parse_wrk(output: str) -> tuple[float, float, int]:
    """(Requests/sec, p99 in ms, requests) from `wrk --latency` output."""
    if "Socket errors" in output:
        raise BenchError(f"wrk reported socket errors:\n{output}")
    if "Non-2xx" in output:
        raise BenchError(f"wrk saw non-2xx responses:\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or p99 is None or total is None:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    return float(rate.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], int(total.group(1))


def run_wrk(wrk: str, port: int, connections: int, duration: int,
            cpus: set[int] | None) -> str:
    argv = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
            f"http://127.0.0.1:{port}/"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        pin(process.pid, cpus)
        stdout, stderr = process.communicate(timeout=duration + 60)
    if process.returncode != 0:
        raise BenchError(f"wrk failed ({process.returncode}): {stderr.strip()}")
    return stdout


def measure(targets: list[Target], rounds: int, duration: int, connections: int,
            progress: bool = True) -> dict[str, list[Run]]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: apt-get install wrk")
    server_cpus, load_cpus = cpu_sets()
    servers: list[ServerProcess] = []
    runs: dict[str, list[Run]] = {target.name: [] for target in targets}
    try:
        for target in targets:
            servers.append(ServerProcess(target, free_port(), server_cpus))
        for server in servers:  # warm-up: first connections, lazy imports, caches
            run_wrk(wrk, server.port, connections, 1, load_cpus)
        for round_number in range(rounds):
            for server in servers:
                cpu_before = server.cpu_seconds()
                output = run_wrk(wrk, server.port, connections, duration, load_cpus)
                cpu = server.cpu_seconds() - cpu_before
                rate, p99, requests = parse_wrk(output)
                run = Run(rate, p99, cpu / requests * 1e6, requests)
                runs[server.target.name].append(run)
                if progress:
                    print(f"round {round_number + 1}/{rounds} {server.target.name:>16}: "
                          f"{rate:9.0f} req/s  p99 {p99:6.2f} ms  "
                          f"{run.cpu_us_per_request:6.1f} us CPU/req", file=sys.stderr)
    finally:
        for server in servers:
            server.stop()
    return runs


def table(runs: dict[str, list[Run]]) -> str:
    def median(name: str, attribute: str) -> float:
        return float(statistics.median(getattr(run, attribute) for run in runs[name]))

    def spread(name: str, attribute: str) -> str:
        values = [getattr(run, attribute) for run in runs[name]]
        return f"{min(values):,.0f}-{max(values):,.0f}"

    ref_rate = median(REFERENCE, "requests_per_second")
    ref_p99 = median(REFERENCE, "p99_ms")
    ref_cpu = median(REFERENCE, "cpu_us_per_request")
    lines = ["| target | req/s (median) | min-max | vs asyncio | p99 ms | vs asyncio "
             "| CPU us/req | vs asyncio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in runs:
        rate = median(name, "requests_per_second")
        p99 = median(name, "p99_ms")
        cpu = median(name, "cpu_us_per_request")
        lines.append(f"| {name} | {rate:,.0f} | {spread(name, 'requests_per_second')} | "
                     f"{rate / ref_rate:.2f}x | {p99:.2f} | {p99 / ref_p99:.2f}x | "
                     f"{cpu:.1f} | {cpu / ref_cpu:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(matrix_backends()),
                        help="muxio backends (default: every one available here)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c")
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    args = parser.parse_args(argv)
    # The servers run `python -m muxio` / `python -m adapters`: make them import this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    backends = [name for name in args.backends.split(",") if name]
    targets = [peer_target(REFERENCE, "http")] + [muxio_target(name, "http")
                                                   for name in backends]
    server_cpus, load_cpus = cpu_sets()
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s GET / (hello); {args.rounds} "
          f"interleaved rounds; server on CPU {server_cpus}, wrk on CPU {load_cpus}; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    runs = measure(targets, args.rounds, args.duration, args.connections)
    print(table(runs))
    if args.json is not None:
        args.json.write_text(json.dumps(
            {name: [asdict(run) for run in entries] for name, entries in runs.items()},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
