"""The `scale` workload of `muxio bench`: the C10K figure (muxio.bench.scale); its own
options (added to `muxio bench`), tables, JSON and chart.

    muxio bench scale --plot c10k.png                    # every backend, asyncio, uvloop
    muxio bench scale --idle-levels 0,1000 --workers 0   # small, no workers section
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from muxio.bench import scale
from muxio.bench.host import host_facts
from muxio.bench.runner import Target, muxio_target, peer_target
from muxio.bench.workloads import cpu_count
from muxio.cli.bench_options import backend_names, counts, peer_names
from muxio.errors import ConfigError
from muxio.pollers.registry import default_registry
from muxio.transports.tcp import system_backlog

WORKLOAD_NAMES = ("scale",)


def add_arguments(bench: argparse.ArgumentParser) -> None:
    group = bench.add_argument_group("scale workload (muxio bench scale)")
    group.add_argument("--idle-levels", default=",".join(map(str, scale.DEFAULT_IDLE)),
                       metavar="K[,K...]",
                       help="idle connections held beside the 50-connection ping-pong "
                            "(default: %(default)s; select stops at its fd limit)")
    group.add_argument("--held-per-worker", type=int, default=scale.PER_HOLDER, metavar="N",
                       help="idle connections per epoll worker in the workers section "
                            f"(default: {scale.PER_HOLDER}; --workers 4 holds 4 x that)")


def run(args: argparse.Namespace) -> int:
    """msg/s, CPU and RSS against idle connections held, per backend and peer; then
    connections held and msg/s with 1, 2, 4... epoll workers."""
    if args.tls:
        raise ConfigError("--tls is not for the scale workload")
    from muxio.cli.bench import refuse_what_would_fail_late  # bench imports this module

    backends = backend_names(args)
    peers = peer_names(args, scale.PEERS)
    refuse_what_would_fail_late(args, peers)
    idle = sorted(set(counts(args.idle_levels, "--idle-levels", allow_zero=True)))
    if args.held_per_worker < 1:
        raise ConfigError(f"--held-per-worker {args.held_per_worker}: give 1 or more")
    worker_counts = [] if args.workers == "0" else counts(args.workers or "1,2,4",
                                                          "--workers")
    registry = default_registry()
    # The peers listen with somaxconn like `muxio serve` (asyncio's default is 100): the
    # idle connections arrive in steps of scale.MUXIO_STEP.
    backlog = ("--backlog", str(system_backlog()))
    targets: list[Target] = ([peer_target(peer, "echo", backlog) for peer in peers]
                             + [muxio_target(backend, "echo") for backend in backends])
    max_fds = {f"muxio/{backend}": registry.get(backend).capabilities.max_fd
               for backend in backends}
    host = host_facts()  # before the run: the load average says who else was busy
    console = Console(width=max(Console().width, 130))
    console.print(f"[bold]scale[/bold]: 50-connection echo ping-pong (100 bytes) beside "
                  f"K idle connections, K in {idle}; {args.rounds} rounds of "
                  f"{args.duration:g} s; {cpu_count()} CPUs (server and load generator "
                  f"pinned apart when >= 2); load average {host['load_average_at_start']}")
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
    meta: dict[str, Any] = {**host, "cpus": cpu_count(), "rounds": args.rounds,
                            "duration": args.duration, "idle": idle,
                            "held_per_worker": args.held_per_worker}
    if args.json:
        args.json.write_text(scale.to_json(results, workers, meta))
        console.print(f"samples written to {args.json}")
    if args.plot:
        load = host["load_average_at_start"]
        scale.plot(results, workers, args.plot,
                   f"muxio bench scale: {cpu_count()} CPUs (shared host, load average "
                   f"{load} at start), {args.rounds} rounds of {args.duration:g} s, medians")
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
