"""Benchmark your own server on every backend, side by side: examples/echo_server.py here.

    python examples/bench_echo.py --rounds 3 --duration 3
    python examples/bench_echo.py --backends epoll,poll --rounds 5

Each backend's server runs in its own process (pinned to one CPU when there are two or
more, the load generator on another); the rounds are interleaved (epoll, poll, ...,
epoll, poll, ...) so a noisy neighbour hurts every column alike; medians are reported.
Any program works as a target if it accepts `--port N` last and prints a line containing
"serving" once it listens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from muxio.bench.runner import Target, Workload, run_comparison
from muxio.bench.workloads import echo_load
from muxio.pollers.registry import default_registry

ECHO_SERVER = str(Path(__file__).with_name("echo_server.py"))


def main() -> int:
    parser = argparse.ArgumentParser(description="the echo example on every backend")
    parser.add_argument("--backends", default=",".join(default_registry().matrix_names()))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    workload = Workload("echo", "echo", "msg", "ping-pong of 100-byte messages",
                        echo_load(connections=args.connections))
    targets = [Target(f"echo/{backend}", (sys.executable, ECHO_SERVER, "--backend", backend),
                      "muxio")
               for backend in args.backends.split(",") if backend]
    results = run_comparison(workload, targets, rounds=args.rounds, duration=args.duration)
    print(f"{'target':<20}{'msg/s':>12}{'server CPU µs/msg':>20}")
    for result in results:
        print(f"{result.target:<20}{result.median('ops_per_second'):>12,.0f}"
              f"{result.median('server_cpu_us_per_op'):>20.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
