"""HTTP/1.1 keep-alive load with every connection opened first: C connections, each sends
`GET PATH` and waits for the whole response before the next, for D seconds. Prints
{"connected": C} once every connection is open (the clock starts then), and at the end
{"messages": N, "seconds": T, "p50_ms": ..., "p99_ms": ...}. With `--wait-go` the clock
starts when a line arrives on stdin.

    python -m muxio.bench.loadgen_http --port 8080 --connections 5000 --duration 4

wrk opens its connections inside its measured window, so at thousands of connections its
rate mostly measures how fast a server accepts; `muxio bench models` wants the steady state
and uses this instead (the same client loop as the echo load generator).
"""

from __future__ import annotations

import argparse
import json
import re

from muxio.bench.loadgen_echo import PingPong, drive, run_on_fastest_loop

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
MAX_HEAD = 64 * 1024


class HttpPingPong(PingPong):
    """One request in flight; a response is complete at its head + Content-Length."""

    buffer = b""

    def complete(self, data: bytes) -> int:
        self.buffer += data
        answers = 0
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
            if length is None:
                raise ValueError(f"a response without Content-Length: {self.buffer[:200]!r}")
            total = end + 4 + int(length.group(1))
            if len(self.buffer) < total:
                break
            self.buffer = self.buffer[total:]
            answers += 1
        if len(self.buffer) > MAX_HEAD and self.buffer.find(b"\r\n\r\n") < 0:
            raise ValueError("a response head longer than 64 KiB")
        return answers


async def run(host: str, port: int, connections: int, path: str,  # noqa: PLR0917
              duration: float, wait_go: bool = False) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    def make(counter: list[int], deadline: float, start_now: bool,
             latencies: list[float] | None) -> PingPong:
        return HttpPingPong(request, counter, deadline, start_on_connect=start_now,
                            latencies=latencies)

    result = await drive(host, port, connections, duration, True, make, wait_go)
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--path", default="/")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--wait-go", action="store_true",
                        help="start the clock when a line arrives on stdin")
    args = parser.parse_args()
    run_on_fastest_loop(run(args.host, args.port, args.connections, args.path,
                            args.duration, args.wait_go))


if __name__ == "__main__":
    main()
