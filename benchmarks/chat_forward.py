"""Chat-forward throughput: N sender/receiver pairs forwarding 100-byte messages through
`muxio serve chat`, on every backend.

    python benchmarks/chat_forward.py                          # N = 10, 100; 3 s runs
    python benchmarks/chat_forward.py --pairs 10 --backends epoll,poll --rounds 3 --json out.json

Each backend's server is a separate process (`muxio serve chat --backend B`), pinned to one
CPU; the load generator (this process, on muxio's loop) is pinned to another when there
are two. For each run, 2N clients connect and greet; each sender keeps `--window` SEND
requests in flight to its own receiver (a new one per SEND_OK), receivers count MESSAGE
indications. After a warm-up, for `--seconds`:

- messages/s: MESSAGE indications received per second (delivered end to end);
- server CPU/msg: the server process's user+system CPU over the run divided by those
  messages (lower is better; it does not depend on how fast the load generator is);
- loadgen CPU: the load generator's CPU use over the run (near 100 % means the numbers are
  bounded by the generator, not the server).

Rounds are interleaved (every backend, then again) and the table shows medians. A SEND
that fails (ERROR) is an error. This is a measurement, not a test: nothing here asserts a
speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

from muxio.bench.loadgen_chat import TEXT, run_pairs
from muxio.bench.runner import (
    BenchError,
    ServerProcess,
    cpu_sets,
    free_port,
    muxio_target,
    pin,
)
from muxio.loop import Loop
from muxio.testing.matrix import matrix_backends


@dataclass
class Run:
    messages_per_second: float
    server_cpu_us_per_message: float
    loadgen_cpu_percent: float
    messages: int


def measure(loop: Loop, server: ServerProcess, pairs: int, *, window: int, seconds: float,
            warmup: float) -> Run:
    samples: dict[str, float] = {}

    def start() -> None:
        samples["cpu"] = server.cpu_seconds()
        samples["mine"] = time.process_time()

    def end() -> None:
        samples["cpu"] = server.cpu_seconds() - samples["cpu"]
        samples["mine"] = time.process_time() - samples["mine"]

    try:
        run = run_pairs(loop, server.port, pairs, window=window, seconds=seconds,
                        warmup=warmup, on_measure_start=start, on_measure_end=end)
    except BenchError as exc:
        raise BenchError(f"{server.target.name}: {exc}") from None
    return Run(run.messages / run.seconds, samples["cpu"] / run.messages * 1e6,
               samples["mine"] / run.seconds * 100, run.messages)


def table(results: dict[tuple[str, int], list[Run]], backends: list[str],
          pair_counts: list[int]) -> str:
    lines = [f"{'backend':<10} {'pairs':>5} {'messages/s':>11} {'server CPU/msg':>15} "
             f"{'loadgen CPU':>12}"]
    for pairs in pair_counts:
        for backend in backends:
            runs = results[(backend, pairs)]
            rate = statistics.median(run.messages_per_second for run in runs)
            cpu = statistics.median(run.server_cpu_us_per_message for run in runs)
            load = statistics.median(run.loadgen_cpu_percent for run in runs)
            lines.append(f"{backend:<10} {pairs:>5} {rate:>11,.0f} {cpu:>12.1f} us "
                         f"{load:>11.0f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="10,100", help="comma-separated N (default: 10,100)")
    parser.add_argument("--backends", default=None,
                        help="comma-separated backends (default: every one available)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument("--window", type=int, default=32,
                        help="SEND requests in flight per sender (default: 32)")
    parser.add_argument("--json", type=Path, default=None, help="write the runs here too")
    args = parser.parse_args(argv)
    backends = args.backends.split(",") if args.backends else matrix_backends()
    pair_counts = [int(n) for n in args.pairs.split(",")]
    server_cpus, load_cpus = cpu_sets()
    pin(os.getpid(), load_cpus)
    servers = []
    results: dict[tuple[str, int], list[Run]] = {
        (backend, pairs): [] for backend in backends for pairs in pair_counts}
    try:
        for backend in backends:
            servers.append(ServerProcess(muxio_target(backend, "chat"), free_port(),
                                         server_cpus))
        with Loop("epoll") as loop:
            for round_number in range(args.rounds):
                for pairs in pair_counts:
                    for backend, server in zip(backends, servers, strict=True):
                        run = measure(loop, server, pairs, window=args.window,
                                      seconds=args.seconds, warmup=args.warmup)
                        results[(backend, pairs)].append(run)
                        print(f"round {round_number + 1}/{args.rounds} {backend:>10} "
                              f"N={pairs:<4} {run.messages_per_second:9,.0f} msg/s "
                              f"{run.server_cpu_us_per_message:6.1f} us CPU/msg",
                              file=sys.stderr, flush=True)
    finally:
        for server in servers:
            server.stop()
    print(f"chat-forward: {len(TEXT)}-byte messages, {args.window} in flight per sender, "
          f"{args.seconds:g} s per run, median of {args.rounds} round(s); server pinned to "
          f"{sorted(server_cpus) if server_cpus else 'any CPU'}, load generator to "
          f"{sorted(load_cpus) if load_cpus else 'any CPU'}")
    print(table(results, backends, pair_counts))
    if args.json is not None:
        args.json.write_text(json.dumps({f"{b}/{n}": [asdict(r) for r in runs]
                                         for (b, n), runs in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
