"""Cost of one `poll(0)` with K idle registered fds and one ready fd, per backend.

    python benchmarks/poll_cost.py [--counts 10,1000,10000] [--json out.json]

Idle and ready fds are eventfds (one fd each, so K=10000 needs only ~10k fds).
select (and the select-based adapters) are skipped where K exceeds their fd limit.
Expect select/poll to grow with K and epoll to stay flat.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

from rich.console import Console
from rich.table import Table

from muxio.pollers import READ, default_registry
from muxio.testing.matrix import poller_backends


def measure(backend: str, idle: int, rounds: int) -> float | None:
    """Median microseconds per poll(0) call, or None if the backend cannot hold K fds."""
    poller = default_registry().create(backend)
    limit = poller.capabilities.max_fd
    fds = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(idle)]
    ready = os.eventfd(1, os.EFD_NONBLOCK)
    try:
        if limit is not None and max([*fds, ready]) >= limit:
            return None
        for fd in fds:
            poller.register(fd, READ)
        poller.register(ready, READ)
        samples = []
        poll = poller.poll
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(rounds):
                poll(0)
            samples.append((time.perf_counter() - start) / rounds * 1e6)
        return statistics.median(samples)
    finally:
        poller.close()
        for fd in (*fds, ready):
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10,1000,10000")
    parser.add_argument("--backends", default=",".join(poller_backends()))
    parser.add_argument("--json", default=None, help="also write results to this file")
    args = parser.parse_args()
    counts = [int(count) for count in args.counts.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, max(counts) + 1000)), hard))
    results: dict[str, dict[int, float | None]] = {}
    for backend in args.backends.split(","):
        results[backend] = {}
        for count in counts:
            rounds = max(20, 200_000 // (count + 10))
            results[backend][count] = measure(backend, count, rounds)
    table = Table(title="one poll(0): microseconds, K idle fds + 1 ready (median of 7)")
    table.add_column("backend")
    for count in counts:
        table.add_column(f"K={count}", justify="right")
    table.add_column(f"K={counts[-1]} / K={counts[0]}", justify="right")
    for backend, row in results.items():
        first, last = row[counts[0]], row[counts[-1]]
        growth = f"{last / first:.1f}x" if first and last else "n/a (fd limit)"
        table.add_row(backend, *("n/a (fd limit)" if row[c] is None else f"{row[c]:.2f}"
                                 for c in counts), growth)
    Console().print(table)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
