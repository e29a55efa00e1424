"""What the HTTP handler costs per keep-alive request over the minimal protocol, in process.

    python benchmarks/http_handler_cost.py                  # CPU µs/request, both protocols
    python benchmarks/http_handler_cost.py --profile full   # cProfile's top entries
    python benchmarks/http_handler_cost.py --callgrind      # instructions per request

wrk against a server on a shared 2-core host mixes the handler's cost with the kernel's,
the loop's and everyone else's load. This replays wrk's request stream straight into the
protocols instead: `--connections` protocol instances, each fed wrk's `GET /` one request
per `data_received` (what a keep-alive client with one request in flight sends), with a
transport that only counts the bytes written, and muxio's Loop (not running) as the
scheduler, so `call_later` and `time` are the real ones. Two protocols:

- full: muxio's HTTP handler with the hello app (`http_protocol_factory(hello_app())`);
- minimal: `muxio.handlers.http.minimal.MinimalHttpProtocol` (httptools, a fixed 200).

Each figure is the minimum over `--trials` of a run's `time.process_time()` per request
(trials alternate between the protocols, so a slow moment hits both); the minimum is the
run least disturbed by other processes. full - minimal is what the handler itself adds.

`--callgrind` runs this script under `valgrind --tool=callgrind` twice per protocol, with
N and 2N requests per connection, and reports (Ir(2N) - Ir(N)) / (N * connections): the
instructions one request costs, with start-up cancelled out. Instruction counts do not
move with the host's load, so they compare two versions of the handler exactly (CPython
3.11 runs the same instructions for the same bytecode path).

This is a measurement, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

from muxio.handlers.http import hello_app, http_protocol_factory
from muxio.handlers.http.minimal import MinimalHttpProtocol
from muxio.loop import Loop
from muxio.protocols import Protocol

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
"""What `wrk -t1 -c50 http://127.0.0.1:8080/` sends per request."""
EXPECTED = b"Hello, World!\n"


class CountingTransport:
    """A Transport that keeps nothing: it counts what it is given to write."""

    def __init__(self) -> None:
        self.written = 0
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)
        self.writes += 1

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "transport": "counting"}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise AssertionError("a keep-alive benchmark connection was closed")

    def abort(self) -> None:
        raise AssertionError("a keep-alive benchmark connection was aborted")

    def pause_reading(self) -> None:
        raise AssertionError("one request per read never pauses reading")

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def write_eof(self) -> None:
        raise AssertionError("no EOF in a keep-alive benchmark")

    def can_write_eof(self) -> bool:
        return True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 16384, 65536


def factories(loop: Loop) -> dict[str, Callable[[], Protocol]]:
    return {"full": http_protocol_factory(hello_app(), loop), "minimal": MinimalHttpProtocol}


def replay(factory: Callable[[], Protocol], connections: int, requests: int) -> float:
    """CPU seconds to serve `requests` requests on each of `connections` connections."""
    pairs = []
    for _ in range(connections):
        transport = CountingTransport()
        protocol = factory()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        pairs.append((protocol.data_received, transport))
    feeds = [feed for feed, _ in pairs]
    request = REQUEST
    started = time.process_time()
    for _ in range(requests):
        for feed in feeds:
            feed(request)
    elapsed = time.process_time() - started
    for _, transport in pairs:
        if transport.writes != requests:
            raise AssertionError(f"{transport.writes} responses for {requests} requests")
    return elapsed


def check(factory: Callable[[], Protocol]) -> None:
    """One request answered with the hello body, or the comparison is void."""
    captured: list[bytes] = []
    transport = CountingTransport()
    transport.write = captured.append  # type: ignore[method-assign]
    protocol = factory()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(REQUEST)
    if len(captured) != 1 or not captured[0].startswith(b"HTTP/1.1 200 ") \
            or not captured[0].endswith(EXPECTED):
        raise AssertionError(f"unexpected response: {captured!r}")


def measure(args: argparse.Namespace) -> None:
    with Loop("epoll") as loop:
        protocols = factories(loop)
        for factory in protocols.values():
            check(factory)
        best = {name: float("inf") for name in protocols}
        for _ in range(args.trials):
            for name, factory in protocols.items():
                seconds = replay(factory, args.connections, args.requests)
                best[name] = min(best[name], seconds / (args.connections * args.requests))
    total = args.connections * args.requests
    print(f"{args.connections} connections x {args.requests} keep-alive requests "
          f"({total:,} per trial), min of {args.trials} trials, time.process_time")
    for name, seconds in best.items():
        print(f"  {name:8s} {seconds * 1e6:6.2f} µs/request")
    print(f"  handler  {(best['full'] - best['minimal']) * 1e6:6.2f} µs/request over minimal")


def profile(args: argparse.Namespace) -> None:
    with Loop("epoll") as loop:
        factory = factories(loop)[args.profile]
        replay(factory, args.connections, max(1, args.requests // 10))  # warm
        profiler = cProfile.Profile()
        profiler.enable()
        replay(factory, args.connections, args.requests)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(args.sort).print_stats(args.top)
    text = out.getvalue()
    # Shorten paths to the repository or the library for the docs.
    text = re.sub(r"/\S*/(muxio/|benchmarks/)", r"\1", text)
    print(text)


def callgrind(args: argparse.Namespace) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    counts: dict[tuple[str, int], int] = {}
    with tempfile.TemporaryDirectory(prefix="muxio-callgrind-") as directory:
        for name in ("full", "minimal"):
            for requests in (args.requests, 2 * args.requests):
                out = Path(directory) / f"{name}-{requests}.out"
                subprocess.run(
                    [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
                     sys.executable, __file__, "--only", name, "--requests", str(requests),
                     "--connections", str(args.connections), "--trials", "1"],
                    check=True, capture_output=True)
                summary = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
                if summary is None:
                    raise SystemExit(f"no summary line in {out}")
                counts[(name, requests)] = int(summary.group(1))
    per_request = {name: (counts[(name, 2 * args.requests)] - counts[(name, args.requests)])
                   / (args.requests * args.connections) for name in ("full", "minimal")}
    print(f"callgrind: instructions per keep-alive request (Ir({2 * args.requests}) - "
          f"Ir({args.requests})) / ({args.requests} x {args.connections} connections)")
    for name, value in per_request.items():
        print(f"  {name:8s} {value:10,.0f}")
    print(f"  handler  {per_request['full'] - per_request['minimal']:10,.0f} over minimal")


def only(args: argparse.Namespace) -> None:
    """One protocol, one run: what `--callgrind` counts (start-up cancels out)."""
    with Loop("epoll") as loop:
        replay(factories(loop)[args.only], args.connections, args.requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per connection per trial (default 2000)")
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--profile", choices=("full", "minimal"), default=None,
                        help="print cProfile's top entries for one protocol instead")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (--profile)")
    parser.add_argument("--top", type=int, default=15, help="entries shown (--profile)")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions per request under valgrind instead")
    parser.add_argument("--only", choices=("full", "minimal"), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        only(args)
    elif args.callgrind:
        callgrind(args)
    elif args.profile:
        profile(args)
    else:
        measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
