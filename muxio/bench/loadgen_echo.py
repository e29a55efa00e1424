"""Echo ping-pong load: C connections, each sends one M-byte message and waits for it to
come back, repeatedly, for D seconds. Prints one JSON line: {"messages": N, "seconds": T}.

    python -m muxio.bench.loadgen_echo --port 7007 --connections 50 --size 100 --duration 3

With `--connect-first` every connection is opened before any message is sent; a line
{"connected": C} is printed then, and the D seconds (and the count) start only after it,
so that the cost of opening 10 000 connections is not mixed into the rate. With `--wait-go`
the clock starts only when a line arrives on stdin (the runner first waits until the server
has accepted every connection). The result line
then also carries the round-trip latency percentiles of the window ("p50_ms", "p99_ms").

Runs on uvloop when installed (the fastest Python client, so that the load generator is
not the bottleneck), else on asyncio. Counts only complete round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

LATENCY_SAMPLES = 1_000_000
"""At most this many round-trip times are kept (the first ones of the window)."""


class PingPong(asyncio.Protocol):
    def __init__(self, message: bytes, counter: list[int], deadline: float, *,
                 start_on_connect: bool = True, latencies: list[float] | None = None) -> None:
        self.message = message
        self.size = len(message)
        self.counter = counter
        self.deadline = deadline
        self.start_on_connect = start_on_connect
        self.latencies = latencies
        self.sent_at = 0.0
        self.pending = 0
        self.transport: Any = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.start_on_connect:
            self.start(self.deadline)

    def start(self, deadline: float) -> None:
        self.deadline = deadline
        self.sent_at = time.monotonic()
        self.transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        for _ in range(self.complete(data)):
            self.counter[0] += 1
            now = time.monotonic()
            latencies = self.latencies
            if latencies is not None and len(latencies) < LATENCY_SAMPLES:
                latencies.append(now - self.sent_at)
            if now >= self.deadline:
                self.transport.close()
                return
            self.sent_at = now
            self.transport.write(self.message)

    def complete(self, data: bytes) -> int:
        """How many whole answers `data` completes (echo: one per `size` bytes)."""
        self.pending += len(data)
        answers, self.pending = divmod(self.pending, self.size)
        return answers

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:  # a reset, or a malformed answer: the run fails, loudly
                self.done.set_exception(exc)


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (nearest rank; values need not be sorted)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


async def drive(host: str, port: int, connections: int,  # noqa: PLR0917
                duration: float, connect_first: bool,
                make: Callable[[list[int], float, bool, list[float] | None], PingPong],
                wait_go: bool = False) -> dict[str, float]:
    """Run `connections` ping-pong clients made by `make(counter, deadline, start_now,
    latencies)`; the result line's fields."""
    loop = asyncio.get_running_loop()
    counter = [0]
    start = time.monotonic()
    deadline = start + duration
    latencies: list[float] | None = [] if connect_first else None
    protocols = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(
            lambda: make(counter, deadline, not connect_first, latencies), host, port)
        protocols.append(protocol)
    if connect_first:
        print(json.dumps({"connected": connections}), flush=True)
        if wait_go:
            await loop.run_in_executor(None, sys.stdin.readline)
        start = time.monotonic()
        deadline = start + duration
        for protocol in protocols:
            protocol.start(deadline)
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protocols)), duration + 30)
    result = {"messages": counter[0], "seconds": time.monotonic() - start}
    if latencies:
        result["p50_ms"] = percentile(latencies, 0.50) * 1000
        result["p99_ms"] = percentile(latencies, 0.99) * 1000
    return result


async def run(host: str, port: int, connections: int, size: int,  # noqa: PLR0917
              duration: float, connect_first: bool = False, wait_go: bool = False) -> None:
    message = b"m" * size

    def make(counter: list[int], deadline: float, start_now: bool,
             latencies: list[float] | None) -> PingPong:
        return PingPong(message, counter, deadline, start_on_connect=start_now,
                        latencies=latencies)

    result = await drive(host, port, connections, duration, connect_first, make, wait_go)
    print(json.dumps(result), flush=True)


def run_on_fastest_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed (the fastest Python client), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connect-first", action="store_true",
                        help="open every connection, print {\"connected\": C}, then start "
                             "the clock (and measure round-trip latency)")
    parser.add_argument("--wait-go", action="store_true",
                        help="with --connect-first: start the clock when a line arrives on "
                             "stdin")
    args = parser.parse_args()
    run_on_fastest_loop(run(args.host, args.port, args.connections, args.size,
                            args.duration, args.connect_first, args.wait_go))


if __name__ == "__main__":
    main()
