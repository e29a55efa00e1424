"""`muxio bench WORKLOAD`: the same handler on every backend and on the peers, side by side.

    muxio bench echo --rounds 5 --duration 3 --json bench.json --plot bench.png
    muxio bench http --tls              # HTTPS keep-alive: muxio's TLS layer vs asyncio/uvloop's
    muxio bench http-close --tls        # a full TLS handshake per request
    muxio bench aio-http --backends epoll,epoll-et   # an aiohttp app on asyncio, uvloop and
                                                     # muxio.aio per backend (aio-echo: streams)
    muxio bench models --out bench-models     # threads vs event loops, 50..10 000 conns
    muxio bench http --protocol minimal # + each host with a bare httptools protocol:
                                        #   the handler's own µs per request, per host
    muxio bench http --workers 1,2      # muxio with 1 and with 2 worker processes
    muxio bench dns --workers 1,2       # dnsperf: muxio beside nsd and Twisted Names
    muxio bench scale --plot c10k.png   # the C10K figure (muxio/cli/bench_scale.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from muxio.bench.dns import DNS_PEERS, DnsBench
from muxio.bench.host import host_facts
from muxio.bench.runner import (
    Target,
    TargetResult,
    Workload,
    handler_cost,
    muxio_target,
    peer_target,
    plot,
    run_comparison,
    to_json,
)
from muxio.bench.tls_certs import ThrowawayPki
from muxio.bench.workloads import TLS_WORKLOADS, WORKLOADS, cpu_count, with_tls
from muxio.cli import bench_kcp, bench_models, bench_scale
from muxio.cli.bench_options import backend_names, counts, peer_names
from muxio.errors import ConfigError
from muxio.pollers.registry import default_registry

PEERS = ("asyncio", "uvloop", "twisted")
MINIMAL_WORKLOADS = ("http", "http-close")
"""Workloads whose service has a minimal protocol to compare the handler with."""
TLS_PEERS = ("asyncio", "uvloop")
"""Peers that bring their own TLS (Twisted's needs pyOpenSSL)."""
PEER_MODULES = {"uvloop": "uvloop", "twisted": "twisted"}
"""Peers that need a package of the bench extra (asyncio is in the standard library)."""


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmark a handler on every backend beside asyncio/uvloop/Twisted")
    bench.add_argument("workload", choices=sorted([*WORKLOADS, "dns",
                                                 *bench_kcp.WORKLOAD_NAMES,
                                                 *bench_models.WORKLOAD_NAMES,
                                                 *bench_scale.WORKLOAD_NAMES]))
    bench.add_argument("--backends", default=",".join(default_registry().matrix_names()),
                       help="muxio backends to run (default: every one available here)")
    bench.add_argument("--peers", default=None,
                       help="peer loops hosting the same handler (default: asyncio, uvloop, "
                            "twisted; with --tls: asyncio, uvloop; for models: asyncio, "
                            "uvloop, threads; dns: nsd, twisted; scale: asyncio, uvloop; "
                            "the aio-* workloads run asyncio apps on asyncio, uvloop and "
                            "muxio.aio)")
    bench.add_argument("--tls", action="store_true",
                       help=f"over TLS ({', '.join(TLS_WORKLOADS)}): muxio's TLS layer "
                            f"against the peers' own TLS, with a throwaway certificate")
    bench.add_argument("--protocol", choices=("full", "minimal"), default="full",
                       help="full: the handler on each host (default); minimal: beside it, "
                            "the same host serving a fixed 200 from a bare httptools "
                            "protocol, so the handler's own server CPU µs per request is a "
                            f"column (workloads: {', '.join(MINIMAL_WORKLOADS)})")
    bench.add_argument("--reference", default=None,
                       help="the column ratios are computed against (default: asyncio, "
                            "else the first target; nsd for dns)")
    bench.add_argument("--workers", default=None, metavar="N[,N...]",
                       help="muxio worker processes (`muxio serve --workers`), one target "
                            "per count: e.g. 1,2 (default: 1); for scale, the counts of its "
                            "workers section (default there: 1,2,4; 0 = skip it)")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    bench.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    bench.add_argument("--json", type=Path, default=None, help="write all samples here")
    bench.add_argument("--plot", type=Path, default=None, help="write a PNG chart here")
    bench_kcp.add_arguments(bench)
    bench_models.add_arguments(bench)
    bench_scale.add_arguments(bench)
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.workload in bench_scale.WORKLOAD_NAMES:
        return bench_scale.run(args)
    if args.workload == "dns":
        if args.tls:
            raise ConfigError("--tls is not for the dns workload")
        with tempfile.TemporaryDirectory(prefix="muxio-bench-dns-") as directory:
            dns_bench = DnsBench.prepare(Path(directory))  # before any target starts
            return _run(args, dns_bench.workload(), DNS_PEERS, dns_bench)
    if args.workload in bench_kcp.WORKLOAD_NAMES:
        return bench_kcp.run(args)
    if args.workload in bench_models.WORKLOAD_NAMES:
        return bench_models.run(args)
    if not args.tls:
        return _run(args, WORKLOADS[args.workload], PEERS)
    if args.workload not in TLS_WORKLOADS:
        raise ConfigError(f"--tls is for the workloads {', '.join(TLS_WORKLOADS)}, not "
                          f"{args.workload}")
    with tempfile.TemporaryDirectory(prefix="muxio-bench-tls-") as directory:
        pki = ThrowawayPki.create(Path(directory))
        return _run(args, with_tls(WORKLOADS[args.workload], pki.server_flags()), TLS_PEERS)


def _run(args: argparse.Namespace, workload: Workload, known_peers: tuple[str, ...],
         dns_bench: DnsBench | None = None) -> int:
    backends = backend_names(args)
    peers = peer_names(args, workload.peers or known_peers)
    workers = counts(args.workers or "1", "--workers")
    if workload.service == "chat" and max(workers) > 1:
        raise ConfigError("--workers > 1 for chat needs a Redis bus (--bus), which muxio "
                          "bench does not start; give --workers 1")
    if workload.targets is not None and max(workers) > 1:
        raise ConfigError(f"--workers is for muxio's own servers; {workload.name} runs an "
                          f"asyncio app on one loop: give --workers 1")
    refuse_what_would_fail_late(args, peers)
    if args.protocol == "minimal" and args.workload not in MINIMAL_WORKLOADS:
        raise ConfigError(f"--protocol minimal is for the workloads "
                          f"{', '.join(MINIMAL_WORKLOADS)}, not {args.workload}")
    variants = (False, True) if args.protocol == "minimal" else (False,)
    targets: list[Target]
    if workload.targets is not None:  # e.g. asyncio apps: muxio.aio per backend
        targets = workload.targets(backends, peers)
    else:
        peer_targets: list[Target] = (
            [dns_bench.peer(peer) for peer in peers] if dns_bench is not None else
            [peer_target(peer, workload.service, workload.service_args, baseline=baseline)
             for peer in peers for baseline in variants])
        targets = peer_targets + [
            muxio_target(backend, workload.service, workload.service_args,
                         baseline=baseline, workers=count)
            for backend in backends for count in workers for baseline in variants]
    names = [target.name for target in targets]
    if args.reference is None:
        default_reference = "nsd" if dns_bench is not None else "asyncio"
        args.reference = default_reference if default_reference in names else names[0]
    if args.reference not in names:
        raise ConfigError(f"--reference {args.reference!r} is not among the targets {names}")
    host = host_facts()  # before the run: the load average says who else was busy
    console = Console(width=max(Console().width, 130))
    pinning = ("nothing pinned: workers need every CPU, the load generator competes"
               if max(workers) > 1 else "server and load generator pinned apart when >= 2")
    console.print(f"[bold]{workload.name}[/bold]: {workload.description}; {args.rounds} "
                  f"interleaved rounds of {args.duration:g} s; {cpu_count()} CPUs "
                  f"({pinning})")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmark", total=args.rounds * len(targets))

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)

        results = run_comparison(workload, targets, rounds=args.rounds,
                                 duration=args.duration, progress=advance)
    console.print(render_table(workload.unit, results, args.reference))
    meta = {**host, "cpus": cpu_count(), "rounds": args.rounds, "duration": args.duration,
            "backends": backends, "peers": peers, "tls": args.tls,
            "protocol": args.protocol, "workers": workers}
    if dns_bench is not None:
        lost = sum(dns_bench.lost.values())
        meta["dnsperf_lost_queries"] = lost
        if lost:
            console.print(f"dnsperf reported {lost} lost queries (all targets and rounds)")
    if args.json:
        args.json.write_text(to_json(workload, results, args.reference, meta))
        console.print(f"samples written to {args.json}")
    if args.plot:
        plot(workload, results, args.plot)
        console.print(f"chart written to {args.plot}")
    return 0


def refuse_what_would_fail_late(args: argparse.Namespace, peers: list[str]) -> None:
    """Refuse now, in one line, what would otherwise fail only after the whole run (a plot
    without matplotlib, a JSON file in a missing directory) or mid-run (a peer that is not
    installed, zero rounds to take a median of)."""
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be >= 1, got {args.rounds}")
    if not args.duration > 0:
        raise ConfigError(f"--duration must be > 0 seconds, got {args.duration:g}")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None and not path.absolute().parent.is_dir():
            raise ConfigError(f"{flag} {path}: the directory {path.absolute().parent} does "
                              f"not exist; create it or give another path")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib: pip install 'muxio[bench]' (or leave "
                          "out --plot)")
    missing = [peer for peer in peers
               if peer in PEER_MODULES and importlib.util.find_spec(PEER_MODULES[peer]) is None]
    if missing:
        raise ConfigError(f"--peers: {', '.join(missing)} not installed here: pip install "
                          f"'muxio[bench]', or choose the peers with e.g. --peers asyncio")


def render_table(unit: str, results: list[TargetResult], reference: str) -> Table:
    ref = next(result for result in results if result.target == reference)
    ref_rate = ref.median("ops_per_second")
    ref_cpu = ref.median("server_cpu_us_per_op")
    with_baselines = any(result.baseline for result in results)
    uvloop = next((result for result in results
                   if result.target == "uvloop" and reference != "uvloop"), None)
    title = f"medians; ratios are to {reference} measured in the same run"
    if with_baselines:
        title += (f"; handler = server CPU µs/{unit} over the same host's (minimal) "
                  f"column")
    table = Table(title=title)
    columns = ["target", f"{unit}/s", f"x {reference}", *(["x uvloop"] if uvloop else []),
               f"server CPU µs/{unit}", "user", "system", f"CPU x {reference}"]
    if with_baselines:
        columns.append(f"handler µs/{unit}")
    columns.append(f"{unit}/s min-max")
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right",
                         no_wrap=column == "target")
    for result in results:
        rate = result.median("ops_per_second")
        cpu = result.median("server_cpu_us_per_op")
        low, high = result.spread("ops_per_second")
        versus_uvloop = [f"{rate / uvloop.median('ops_per_second'):.2f}"] if uvloop else []
        row = [result.target, f"{rate:,.0f}", f"{rate / ref_rate:.2f}", *versus_uvloop,
               f"{cpu:.1f}",
               f"{result.median('server_user_us_per_op'):.1f}",
               f"{result.median('server_system_us_per_op'):.1f}", f"{cpu / ref_cpu:.2f}"]
        if with_baselines:
            cost = handler_cost(results, result)
            row.append("" if cost is None else f"{cost:.1f}")
        row.append(f"{low:,.0f}-{high:,.0f}")
        table.add_row(*row)
    return table
