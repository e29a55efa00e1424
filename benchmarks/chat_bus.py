"""Chat-forward throughput across servers joined by Redis (`muxio serve chat --bus`),
against one server alone.

    python benchmarks/chat_bus.py                       # 10 and 50 pairs, 3 s runs, 3 rounds
    python benchmarks/chat_bus.py --pairs 10 --rounds 1 --json out.json

Starts its own redis-server (free port, no persistence) and three setups, each a separate
`muxio serve chat` process (epoll):

- `1 server`: no bus; senders and receivers on it (the single-process figure);
- `1 server + bus`: the same with --bus: logins go through Redis, forwarding stays local;
- `2 servers, pairs local`: A and B on the bus, each pair (sender and receiver) on one of
  them, alternately: the load spread over two processes, no message crossing;
- `2 servers, all across`: senders on A, receivers on B: every message crosses Redis (EVALSHA
  of the send script, PUBLISH to B's channel, B delivers).

The load generator is muxio.bench.loadgen_chat (each sender keeps `--window` SEND requests
in flight; a server answers a SEND to another server's client once Redis has it, and takes
that sender's next request after the answer, so across servers each sender has one
message in flight). Rounds are interleaved, medians shown, with the load average: on a
2-core host the two servers, Redis and the generator share the cores, unpinned. So the
table also shows the CPU time per message of the setup's server processes and Redis
together (user + system, from /proc), which the sharing does not change much. This is a
measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

from muxio.bench.loadgen_chat import TEXT, run_pairs
from muxio.bench.runner import (
    BenchError,
    ServerProcess,
    free_port,
    muxio_target,
    process_cpu_seconds,
)
from muxio.handlers.chat import Hello, MessageType, encode
from muxio.loop import Loop

SETUPS = ("1 server", "1 server + bus", "2 servers, pairs local", "2 servers, all across")


def accepts_logins(port: int) -> bool:
    """One HELLO: True once the server answers HELLO_OK (its bus is up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(encode(Hello(request_id=1)))
            head = b""
            while len(head) < 5:
                chunk = sock.recv(5 - len(head))
                if not chunk:
                    return False
                head += chunk
            return head[4] == MessageType.HELLO_OK and struct.unpack(">I", head[:4])[0] > 0
    except OSError:
        return False


def wait_until(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not callable(condition) or not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="10,50", help="comma-separated N (default: 10,50)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    program = shutil.which("redis-server")
    if program is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    pair_counts = [int(n) for n in args.pairs.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="chat-bus-"))
    redis_port = free_port()
    redis = subprocess.Popen([program, "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bus = ("--bus", f"redis://127.0.0.1:{redis_port}")
    servers: list[ServerProcess] = []
    results: dict[tuple[str, int], list[float]] = {
        (setup, pairs): [] for setup in SETUPS for pairs in pair_counts}
    cpu: dict[tuple[str, int], list[float]] = {key: [] for key in results}
    """CPU µs per message: the setup's server processes and Redis together."""
    loads = []
    try:
        alone = ServerProcess(muxio_target("epoll", "chat"), free_port(), None)
        with_bus = ServerProcess(muxio_target("epoll", "chat", bus), free_port(), None)
        a = ServerProcess(muxio_target("epoll", "chat", bus), free_port(), None)
        b = ServerProcess(muxio_target("epoll", "chat", bus), free_port(), None)
        servers += [alone, with_bus, a, b]
        for server in (with_bus, a, b):
            wait_until(lambda server=server: accepts_logins(server.port),
                       f"the bus of the server on port {server.port}")
        ports = {"1 server": (alone.port, None), "1 server + bus": (with_bus.port, None),
                 "2 servers, pairs local": (a.port, None),
                 "2 servers, all across": (a.port, b.port)}
        pids = {"1 server": [alone.process.pid],
                "1 server + bus": [with_bus.process.pid, redis.pid],
                "2 servers, pairs local": [a.process.pid, b.process.pid, redis.pid],
                "2 servers, all across": [a.process.pid, b.process.pid, redis.pid]}
        with Loop("epoll") as loop:
            for round_number in range(args.rounds):
                for pairs in pair_counts:
                    for setup in SETUPS:
                        port, receiver_port = ports[setup]
                        samples: list[float] = []

                        def sample(setup: str = setup, samples: list[float] = samples) -> None:
                            samples.append(sum(map(process_cpu_seconds, pids[setup])))

                        run = run_pairs(loop, port, pairs, window=args.window,
                                        seconds=args.seconds, warmup=args.warmup,
                                        receiver_port=receiver_port,
                                        pair_ports=(a.port, b.port) if (
                                            setup == "2 servers, pairs local") else (),
                                        on_measure_start=sample, on_measure_end=sample)
                        rate = run.messages / run.seconds
                        results[(setup, pairs)].append(rate)
                        cpu[(setup, pairs)].append((samples[1] - samples[0])
                                                   / run.messages * 1e6)
                        loads.append(os.getloadavg()[0])
                        print(f"round {round_number + 1}/{args.rounds} {setup:<22} "
                              f"N={pairs:<4} {rate:9,.0f} msg/s", file=sys.stderr,
                              flush=True)
    finally:
        for server in servers:
            server.stop()
        redis.terminate()
        redis.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"chat-forward over a Redis bus: {len(TEXT)}-byte messages, {args.window} SENDs "
          f"in flight per sender, {args.seconds:g} s per run, median of {args.rounds} "
          f"interleaved round(s), unpinned; load average (1 min) during the runs "
          f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    print(f"{'setup':<22} {'pairs':>5} {'messages/s':>11} {'vs 1 server':>12} "
          f"{'CPU/msg (servers + Redis)':>26}")
    for pairs in pair_counts:
        base = statistics.median(results[("1 server", pairs)])
        for setup in SETUPS:
            rate = statistics.median(results[(setup, pairs)])
            per_message = statistics.median(cpu[(setup, pairs)])
            print(f"{setup:<22} {pairs:>5} {rate:>11,.0f} {rate / base:>11.2f}x "
                  f"{per_message:>23.1f} us")
    if args.json is not None:
        args.json.write_text(json.dumps(
            {f"{s}/{n}": {"messages_per_second": runs, "cpu_us_per_message": cpu[(s, n)]}
             for (s, n), runs in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
