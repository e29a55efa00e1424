"""Echo ping-pong load: C connections, each sends one M-byte message and waits for it to
come back, repeatedly, for D seconds. Prints one JSON line: {"messages": N, "seconds": T}.

    python -m muxio.bench.loadgen_echo --port 7007 --connections 50 --size 100 --duration 3

Runs on uvloop when installed (the fastest Python client, so that the load generator is
not the bottleneck), else on asyncio. Counts only complete round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any


class PingPong(asyncio.Protocol):
    def __init__(self, message: bytes, counter: list[int], deadline: float) -> None:
        self.message = message
        self.size = len(message)
        self.counter = counter
        self.deadline = deadline
        self.pending = 0
        self.transport: Any = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        while self.pending >= self.size:
            self.pending -= self.size
            self.counter[0] += 1
            if time.monotonic() >= self.deadline:
                self.transport.close()
                return
            self.transport.write(self.message)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(host: str, port: int, connections: int, size: int, duration: float) -> None:
    loop = asyncio.get_running_loop()
    counter = [0]
    message = b"m" * size
    start = time.monotonic()
    deadline = start + duration
    protocols = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(
            lambda: PingPong(message, counter, deadline), host, port)
        protocols.append(protocol)
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protocols)), duration + 30)
    print(json.dumps({"messages": counter[0], "seconds": time.monotonic() - start}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    coroutine = run(args.host, args.port, args.connections, args.size, args.duration)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


if __name__ == "__main__":
    main()
