"""In-memory KCP transfer: our pure-Python core against the C reference (siokcp).

    python benchmarks/kcp_core.py [--mb 64] [--repeat 3] [--profiles fast,normal] [--cprofile]

The same measurement as `muxio bench kcp` (muxio/bench/kcp_core.py holds it): two control
blocks per implementation, no loss, driven batched (one flush per round, as the transport
runs) and per-datagram (a flush after every input). ``--cprofile`` runs ours under cProfile
instead and prints the hottest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

from rich.console import Console

# measure the checkout this script lives in, whatever copy of muxio is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from muxio.bench.kcp_core import MODES, OURS, compare, render, transfer
from muxio.transports.kcp.core import PROFILES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=64, help="MiB to transfer per run")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--profiles", default="fast", help="KCP profiles, comma-separated")
    parser.add_argument("--cprofile", action="store_true", help="cProfile our core")
    args = parser.parse_args()
    profiles = [name for name in args.profiles.split(",") if name]
    console = Console(width=max(Console().width, 120))
    if args.cprofile:
        for mode in MODES:
            profiler = cProfile.Profile()
            profiler.enable()
            transfer(OURS, PROFILES[profiles[0]], mode, args.mb << 20)
            profiler.disable()
            console.print(f"[bold]{mode}[/]")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
        return
    console.print(render(compare(profiles, nbytes=args.mb << 20, rounds=args.repeat)))


if __name__ == "__main__":
    main()
