"""`muxio bench WORKLOAD`: the same handler on every backend and on the peers, side by side.

    muxio bench echo --rounds 5 --duration 3 --json bench.json --plot bench.png
    muxio bench http --tls              # HTTPS keep-alive: muxio's TLS layer vs asyncio/uvloop's
    muxio bench http-close --tls        # a full TLS handshake per request
    muxio bench http --workers 1,2      # muxio with 1 and with 2 worker processes
    muxio bench dns --workers 1,2       # dnsperf: muxio beside nsd and Twisted Names
    muxio bench scale --plot c10k.png   # the C10K figure (muxio.bench.scale)
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from muxio.bench import scale
from muxio.bench.dns import DNS_PEERS, DnsBench
from muxio.bench.runner import (
    Target,
    TargetResult,
    Workload,
    muxio_target,
    peer_target,
    plot,
    run_comparison,
    to_json,
)
from muxio.bench.tls_certs import ThrowawayPki
from muxio.bench.workloads import TLS_WORKLOADS, WORKLOADS, cpu_count, with_tls
from muxio.errors import ConfigError, MuxioError
from muxio.pollers.registry import default_registry

PEERS = ("asyncio", "uvloop", "twisted")
TLS_PEERS = ("asyncio", "uvloop")
"""Peers that bring their own TLS (Twisted's needs pyOpenSSL)."""


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmark a handler on every backend beside asyncio/uvloop/Twisted")
    bench.add_argument("workload", choices=sorted([*WORKLOADS, "dns", "scale"]))
    bench.add_argument("--backends", default=",".join(default_registry().matrix_names()),
                       help="muxio backends to run (default: every one available here)")
    bench.add_argument("--peers", default=None,
                       help="peer loops hosting the same handler (default: asyncio, uvloop, "
                            "twisted; with --tls: asyncio, uvloop; dns: nsd, twisted; "
                            "scale: asyncio, uvloop)")
    bench.add_argument("--tls", action="store_true",
                       help=f"over TLS ({', '.join(TLS_WORKLOADS)}): muxio's TLS layer "
                            f"against the peers' own TLS, with a throwaway certificate")
    bench.add_argument("--reference", default=None,
                       help="the column ratios are computed against (default: asyncio; "
                            "nsd for dns)")
    bench.add_argument("--workers", default=None, metavar="N[,N...]",
                       help="muxio worker processes (`muxio serve --workers`), one target "
                            "per count: e.g. 1,2 (default: 1); for scale, the counts of its "
                            "workers section (default there: 1,2,4; 0 = skip it)")
    bench.add_argument("--idle", default=",".join(map(str, scale.DEFAULT_IDLE)),
                       metavar="K[,K...]",
                       help="scale: idle connections held beside the ping-pong "
                            "(default: %(default)s)")
    bench.add_argument("--held-per-worker", type=int, default=scale.PER_HOLDER, metavar="N",
                       help="scale --workers: idle connections per worker "
                            f"(default: {scale.PER_HOLDER}; 4 workers hold 4 x that)")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    bench.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    bench.add_argument("--json", type=Path, default=None, help="write all samples here")
    bench.add_argument("--plot", type=Path, default=None, help="write a PNG chart here")
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise ConfigError(f"--rounds {args.rounds}: give 1 or more")
    if not args.duration > 0:
        raise ConfigError(f"--duration {args.duration:g}: give a number of seconds > 0")
    if args.workload == "scale":
        return _run_scale(args)
    if args.workload == "dns":
        if args.tls:
            raise ConfigError("--tls is not for the dns workload")
        with tempfile.TemporaryDirectory(prefix="muxio-bench-dns-") as directory:
            dns_bench = DnsBench.prepare(Path(directory))  # before any target starts
            return _run(args, dns_bench.workload(), DNS_PEERS, dns_bench)
    if not args.tls:
        return _run(args, WORKLOADS[args.workload], PEERS)
    if args.workload not in TLS_WORKLOADS:
        raise ConfigError(f"--tls is for the workloads {', '.join(TLS_WORKLOADS)}, not "
                          f"{args.workload}")
    with tempfile.TemporaryDirectory(prefix="muxio-bench-tls-") as directory:
        pki = ThrowawayPki.create(Path(directory))
        return _run(args, with_tls(WORKLOADS[args.workload], pki.server_flags()), TLS_PEERS)


def _backends(args: argparse.Namespace) -> list[str]:
    backends = [name for name in args.backends.split(",") if name]
    registry = default_registry()
    for name in backends:
        try:
            registry.choose(name)
        except MuxioError as exc:  # unknown or unavailable here: one line, exit 2
            raise ConfigError(f"--backends: {exc}") from None
    return backends


def _peers(args: argparse.Namespace, known_peers: tuple[str, ...],
           default: tuple[str, ...] | None = None) -> list[str]:
    given = args.peers if args.peers is not None else ",".join(default or known_peers)
    peers = [name for name in given.split(",") if name]
    unknown = [peer for peer in peers if peer not in known_peers]
    if unknown:
        raise ConfigError(f"--peers {unknown} unknown{' with --tls' if args.tls else ''}"
                          f"{' for ' + args.workload if args.workload in ('dns', 'scale') else ''}"
                          f"; choose from {', '.join(known_peers)}")
    return peers


def _counts(text: str, flag: str, *, allow_zero: bool = False) -> list[int]:
    """'1,2,4' -> [1, 2, 4], each checked (one `muxio: error:` line otherwise)."""
    try:
        counts = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give numbers separated by commas") from None
    low = 0 if allow_zero else 1
    if not counts or any(count < low for count in counts):
        raise ConfigError(f"{flag} {text!r}: give numbers >= {low} separated by commas")
    return counts


def _run(args: argparse.Namespace, workload: Workload, known_peers: tuple[str, ...],
         dns_bench: DnsBench | None = None) -> int:
    backends = _backends(args)
    peers = _peers(args, known_peers)
    workers = _counts(args.workers or "1", "--workers")
    if workload.service == "chat" and max(workers) > 1:
        raise ConfigError("--workers > 1 for chat needs a Redis bus; run chat with the "
                          "benchmarks/ scripts for that")
    peer_targets: list[Target] = [
        dns_bench.peer(peer) if dns_bench is not None
        else peer_target(peer, workload.service, workload.service_args) for peer in peers]
    targets = peer_targets + [muxio_target(backend, workload.service, workload.service_args,
                                           count)
                              for backend in backends for count in workers]
    names = [target.name for target in targets]
    if args.reference is None:
        default_reference = "nsd" if dns_bench is not None else "asyncio"
        args.reference = default_reference if default_reference in names else names[0]
    if args.reference not in names:
        raise ConfigError(f"--reference {args.reference!r} is not among the targets {names}")
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
    if dns_bench is not None and any(dns_bench.lost.values()):
        console.print(f"dnsperf reported lost queries (all rounds): {sum(dns_bench.lost.values())}")
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": cpu_count(), "rounds": args.rounds, "duration": args.duration,
            "tls": args.tls, "workers": workers}
    if dns_bench is not None:
        meta["dnsperf_lost_queries"] = sum(dns_bench.lost.values())
    if args.json:
        args.json.write_text(to_json(workload, results, args.reference, meta))
        console.print(f"samples written to {args.json}")
    if args.plot:
        plot(workload, results, args.plot)
        console.print(f"chart written to {args.plot}")
    return 0


def render_table(unit: str, results: list[TargetResult], reference: str) -> Table:
    ref = next(result for result in results if result.target == reference)
    ref_rate = ref.median("ops_per_second")
    ref_cpu = ref.median("server_cpu_us_per_op")
    table = Table(title=f"medians; ratios are to {reference} measured in the same run")
    for column in ("target", f"{unit}/s", f"x {reference}", f"server CPU µs/{unit}",
                   "user", "system", f"CPU x {reference}", f"{unit}/s min-max"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for result in results:
        rate = result.median("ops_per_second")
        cpu = result.median("server_cpu_us_per_op")
        low, high = result.spread("ops_per_second")
        table.add_row(result.target, f"{rate:,.0f}", f"{rate / ref_rate:.2f}", f"{cpu:.1f}",
                      f"{result.median('server_user_us_per_op'):.1f}",
                      f"{result.median('server_system_us_per_op'):.1f}",
                      f"{cpu / ref_cpu:.2f}", f"{low:,.0f}-{high:,.0f}")
    return table


def _run_scale(args: argparse.Namespace) -> int:
    """`muxio bench scale`: msg/s, CPU and RSS against idle connections held, per backend
    and peer; then connections held and msg/s with 1, 2, 4... epoll workers."""
    if args.tls:
        raise ConfigError("--tls is not for the scale workload")
    backends = _backends(args)
    peers = _peers(args, scale.PEERS)
    idle = sorted(set(_counts(args.idle, "--idle", allow_zero=True)))
    if args.held_per_worker < 1:
        raise ConfigError(f"--held-per-worker {args.held_per_worker}: give 1 or more")
    worker_counts = [] if args.workers == "0" else _counts(args.workers or "1,2,4",
                                                           "--workers")
    registry = default_registry()
    targets = ([peer_target(peer, "echo") for peer in peers]
               + [muxio_target(backend, "echo") for backend in backends])
    max_fds = {f"muxio/{backend}": registry.get(backend).capabilities.max_fd
               for backend in backends}
    console = Console(width=max(Console().width, 130))
    console.print(f"[bold]scale[/bold]: 50-connection echo ping-pong (100 bytes) beside "
                  f"K idle connections, K in {idle}; {args.rounds} rounds of "
                  f"{args.duration:g} s; {cpu_count()} CPUs (server and load generator "
                  f"pinned apart when >= 2)")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("scale", total=None)

        def report(description: str) -> None:
            progress.update(task, description=description)

        results = scale.run_scale(targets, idle, rounds=args.rounds, duration=args.duration,
                                  max_fds=max_fds, progress=report)
        workers = scale.run_workers(
            lambda count: muxio_target("epoll", "echo", workers=count), worker_counts,
            per_worker=args.held_per_worker, duration=args.duration, progress=report)
    console.print(render_scale_table(results))
    if workers:
        console.print(render_workers_table(workers))
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": cpu_count(), "rounds": args.rounds, "duration": args.duration,
            "idle": idle, "held_per_worker": args.held_per_worker}
    if args.json:
        args.json.write_text(scale.to_json(results, workers, meta))
        console.print(f"samples written to {args.json}")
    if args.plot:
        scale.plot(results, workers, args.plot,
                   f"muxio bench scale: {cpu_count()} CPUs, {args.rounds} rounds of "
                   f"{args.duration:g} s, medians")
        console.print(f"chart written to {args.plot}")
    return 0


def render_scale_table(results: list[scale.ScaleResult]) -> Table:
    table = Table(title="medians over rounds; RSS/idle = (RSS at K - RSS at 0) / K")
    for column in ("target", "idle K", "msg/s", "server CPU µs/msg", "RSS MB",
                   "RSS/idle kB"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for result in results:
        for point in sorted(result.points.values(), key=lambda p: p.idle):
            per_idle = point.rss_per_idle()
            table.add_row(result.target, f"{point.idle:,}",
                          f"{point.median('messages_per_second'):,.0f}",
                          f"{point.median('server_cpu_us_per_message'):.1f}",
                          f"{point.median('rss_bytes') / 1e6:.1f}",
                          "-" if per_idle is None else f"{per_idle / 1024:.2f}")
    return table


def render_workers_table(workers: list[scale.WorkersResult]) -> Table:
    table = Table(title="epoll workers (nothing pinned: the load generator competes)")
    for column in ("workers", "idle held", "msg/s alone", "msg/s beside them",
                   "CPU µs/msg beside", "RSS MB (all workers)", "RSS/held kB"):
        table.add_column(column, justify="right")
    for entry in workers:
        table.add_row(str(entry.workers), f"{entry.held:,}",
                      f"{entry.messages_per_second_alone:,.0f}",
                      f"{entry.messages_per_second_held:,.0f}",
                      f"{entry.server_cpu_us_per_message_held:.1f}",
                      f"{entry.rss_bytes / 1e6:.1f}",
                      f"{(entry.rss_bytes - entry.rss_bytes_alone) / entry.held / 1024:.2f}")
    return table
