"""Soak: the cross-backend differential stress test, seed after seed, for as long as asked.

    python benchmarks/stress_soak.py --minutes 10                 # every backend x transport
    python benchmarks/stress_soak.py --minutes 60 --backends epoll-et --transports tcp

Each seed is a scenario of many interacting connections (see muxio.testing.stress); every
backend and transport must match the model on every seed. Seeds run round-robin over the
backend x transport pairs, so each pair sees the same seeds. The first seed that fails is
printed with its problems and the command that replays it; the exit code is 1 then.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

from muxio.loop import Loop
from muxio.testing.matrix import matrix_backends
from muxio.testing.stress import make_scenario, run_scenario
from muxio.transports import tcp
from muxio.transports.registry import STREAM_TRANSPORTS, stream_transport


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--backends", default=",".join(matrix_backends()))
    parser.add_argument("--transports", default=",".join(STREAM_TRANSPORTS))
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=24)
    parser.add_argument("--small-reads", action="store_true",
                        help="4 KiB reads, 2 per edge: the rare TCP paths all the time")
    args = parser.parse_args()
    if args.small_reads:
        tcp.MAX_READ = 4096
        tcp._READS_PER_EDGE = 2
    pairs = [(backend, transport) for transport in args.transports.split(",")
             for backend in args.backends.split(",")]
    deadline = time.monotonic() + args.minutes * 60.0
    runs: dict[tuple[str, str], int] = dict.fromkeys(pairs, 0)
    conversations = 0
    for seed in itertools.count(args.first_seed):
        if time.monotonic() > deadline:
            break
        for backend, transport in pairs:
            spec = stream_transport(transport)
            scenario = make_scenario(seed, conversations=args.conversations,
                                     max_bytes=200_000 if transport == "tcp" else 20_000)
            with Loop(backend) as loop:
                result = run_scenario(scenario, loop=loop, serve=spec.serve,
                                      connect=spec.connect, transport_name=transport)
            runs[(backend, transport)] += 1
            conversations += len(scenario.conversations)
            if result.problems:
                print(f"seed {seed} on {backend}/{transport}: {len(result.problems)} problems")
                for problem in result.problems:
                    print(f"  {problem}")
                print(f"replay: python {sys.argv[0]} --first-seed {seed} --minutes 0.01 "
                      f"--backends {backend} --transports {transport}")
                return 1
    for (backend, transport), count in runs.items():
        print(f"{backend:>10} / {transport}: {count} scenarios, all match the model")
    print(f"{conversations} conversations in {args.minutes} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
