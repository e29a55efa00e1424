"""`muxio bench WORKLOAD`: the same handler on every backend and on the peers, side by side.

    muxio bench echo --rounds 5 --duration 3 --json bench.json --plot bench.png
    muxio bench models --out bench-models      # threads vs event loops, 50..10 000 conns
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from muxio.bench.models import (
    DEFAULT_COUNTS,
    DEFAULT_IDLE,
    DEFAULT_PEERS,
    DEFAULT_THREAD_STACK_KIB,
    MODEL_WORKLOADS,
    Cell,
    Plan,
    Summary,
    from_json,
    model_targets,
    perf_unavailable,
    run_plan,
    summarise,
    to_json,
)
from muxio.bench.models_report import markdown, plot_edge, plot_workload, summary_lines, tables
from muxio.bench.runner import (
    BenchError,
    TargetResult,
    muxio_target,
    peer_target,
    plot,
    run_comparison,
)
from muxio.bench.runner import to_json as comparison_json
from muxio.bench.workloads import WORKLOADS, cpu_count
from muxio.errors import ConfigError
from muxio.testing.matrix import matrix_backends
from muxio.transports.tcp import system_backlog

PEERS = ("asyncio", "uvloop", "twisted")
MODEL_PEERS = ("asyncio", "uvloop", "twisted", "threads")


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmark a handler on every backend beside asyncio/uvloop/Twisted")
    bench.add_argument("workload", choices=sorted([*WORKLOADS, "models"]),
                       help="a workload, or 'models': echo and HTTP from 50 to 10 000 "
                            "connections on threads and every event loop")
    bench.add_argument("--backends", default=",".join(matrix_backends()),
                       help="muxio backends to run (default: every one available here)")
    bench.add_argument("--peers", default=None,
                       help="peer loops hosting the same handler (default: asyncio, uvloop, "
                            "twisted; for models: asyncio, uvloop, threads)")
    bench.add_argument("--reference", default="asyncio",
                       help="the column ratios are computed against (default: asyncio)")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    bench.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    bench.add_argument("--json", type=Path, default=None, help="write all samples here")
    bench.add_argument("--plot", type=Path, default=None, help="write a PNG chart here")
    models = bench.add_argument_group("models (muxio bench models)")
    models.add_argument("--connections", default=",".join(map(str, DEFAULT_COUNTS)),
                        help="active connection counts (default: %(default)s; those that "
                             "do not fit the fd limit are skipped with the reason)")
    models.add_argument("--idle", type=int, default=DEFAULT_IDLE,
                        help="idle connections held open beside the active ones "
                             "(default: %(default)s)")
    models.add_argument("--loads", default=",".join(MODEL_WORKLOADS),
                        help="workloads to run (default: %(default)s)")
    models.add_argument("--thread-stack", type=int,
                        default=DEFAULT_THREAD_STACK_KIB, metavar="KIB",
                        help="stack size of the thread host's threads (default: "
                             "%(default)s KiB)")
    models.add_argument("--from-json", type=Path, default=None, metavar="MODELS_JSON",
                        help="measure nothing: redraw the tables, charts and summary.md of "
                             "an earlier run's models.json into --out")
    models.add_argument("--out", type=Path, default=Path("bench-models"),
                        help="directory for models.json, the PNG charts and summary.md "
                             "(default: %(default)s)")
    bench.set_defaults(func=run)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def run(args: argparse.Namespace) -> int:
    if args.workload == "models":
        return run_models(args)
    workload = WORKLOADS[args.workload]
    backends = [name for name in args.backends.split(",") if name]
    peers = _names(args.peers if args.peers is not None else ",".join(PEERS))
    unknown = [peer for peer in peers if peer not in PEERS]
    if unknown:
        raise ConfigError(f"--peers {unknown} unknown; choose from {', '.join(PEERS)}")
    targets = ([peer_target(peer, workload.service, workload.service_args) for peer in peers]
               + [muxio_target(backend, workload.service, workload.service_args)
                  for backend in backends])
    names = [target.name for target in targets]
    if args.reference not in names:
        raise ConfigError(f"--reference {args.reference!r} is not among the targets {names}")
    console = Console(width=max(Console().width, 130))
    console.print(f"[bold]{workload.name}[/bold]: {workload.description}; {args.rounds} "
                  f"interleaved rounds of {args.duration:g} s; {cpu_count()} CPUs "
                  f"(server and load generator pinned apart when >= 2)")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmark", total=args.rounds * len(targets))

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)

        results = run_comparison(workload, targets, rounds=args.rounds,
                                 duration=args.duration, progress=advance)
    console.print(render_table(workload.unit, results, args.reference))
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": cpu_count(), "rounds": args.rounds, "duration": args.duration}
    if args.json:
        args.json.write_text(comparison_json(workload, results, args.reference, meta))
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
                   f"CPU x {reference}", f"{unit}/s min-max"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for result in results:
        rate = result.median("ops_per_second")
        cpu = result.median("server_cpu_us_per_op")
        low, high = result.spread("ops_per_second")
        table.add_row(result.target, f"{rate:,.0f}", f"{rate / ref_rate:.2f}", f"{cpu:.1f}",
                      f"{cpu / ref_cpu:.2f}", f"{low:,.0f}-{high:,.0f}")
    return table


def run_models(args: argparse.Namespace) -> int:
    """`muxio bench models`: run the plan, print a table per workload and count, write
    the JSON, the charts and summary.md under --out."""
    peers = _names(args.peers if args.peers is not None else ",".join(DEFAULT_PEERS))
    unknown = [peer for peer in peers if peer not in MODEL_PEERS]
    if unknown:
        raise ConfigError(f"--peers {unknown} unknown; choose from {', '.join(MODEL_PEERS)}")
    loads = _names(args.loads)
    if not loads or any(load not in MODEL_WORKLOADS for load in loads):
        raise ConfigError(f"--loads {args.loads!r}: choose from {', '.join(MODEL_WORKLOADS)}")
    try:
        counts = [int(count) for count in _names(args.connections)]
    except ValueError:
        raise ConfigError(f"--connections {args.connections!r}: give numbers, e.g. "
                          f"50,500,5000") from None
    if not counts or min(counts) < 1:
        raise ConfigError("--connections needs counts >= 1")
    if args.idle < 0 or args.rounds < 1 or args.duration <= 0 or args.thread_stack < 32:
        raise ConfigError("--idle must be >= 0, --rounds >= 1, --duration > 0 and "
                          "--thread-stack >= 32 (KiB)")
    console = Console(width=max(Console().width, 160))
    if args.from_json is not None:
        try:
            plan, cells, summaries = from_json(args.from_json.read_text())
        except (OSError, ValueError, KeyError, TypeError, BenchError) as exc:
            raise ConfigError(f"--from-json {args.from_json}: {exc}") from None
        report_models(console, plan, cells, summaries, args.out)
        return 0
    targets = model_targets(_names(args.backends), peers, args.thread_stack)
    backlog = system_backlog()
    meta: dict[str, Any] = {
        "python": platform.python_version(), "machine": platform.machine(),
        "kernel": platform.release(), "cpus": cpu_count(), "rounds": args.rounds,
        "duration": args.duration, "idle": args.idle, "counts": counts,
        "thread_stack_kib": args.thread_stack, "backlog": backlog,
        "load_average_at_start": os.getloadavg(),
        "syscalls": perf_unavailable() or "perf stat raw_syscalls:sys_enter",
        "host": f"{cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start "
                f"(a shared machine shows in the spread); server and load generator "
                f"pinned apart"}
    plan = Plan(loads, counts, args.idle, targets, args.rounds, args.duration, meta)
    console.print(f"[bold]models[/bold]: {', '.join(loads)} at {counts} active + {args.idle} "
                  f"idle connections on {', '.join(t.name for t in targets)}; "
                  f"{args.rounds} interleaved rounds of {args.duration:g} s; {meta['host']}")
    total = args.rounds * len(loads) * len(counts) * len(targets)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so that each cell's cleanup stops its processes

    signal.signal(signal.SIGTERM, interrupted)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("models", total=total)

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)

        cells = run_plan(plan, backlog, progress=advance)
    meta["load_average_at_end"] = os.getloadavg()
    report_models(console, plan, cells, summarise(cells), args.out)
    return 0


def report_models(console: Console, plan: Plan, cells: list[Cell],
                  summaries: list[Summary], out: Path) -> None:
    """Tables and summary lines on the console; JSON, summary.md and charts under `out`."""
    loads, counts, targets = plan.workloads, plan.counts, plan.targets
    stack = plan.meta.get("thread_stack_kib")
    lines = summary_lines(summaries, loads, counts, stack)
    for load in loads:
        for table in tables(summaries, targets, load, counts):
            console.print(table)
        for key in ("throughput", "memory", "edge"):
            console.print(f"- {lines[f'{load}-{key}']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(to_json(plan, cells, summaries, lines))
    (out / "summary.md").write_text(markdown(summaries, targets, loads, counts,
                                             lines=lines, meta=plan.meta))
    for load in loads:
        plot_workload(summaries, targets, load, lines, out / f"models-{load}.png")
    plot_edge(summaries, loads, lines, out / "models-epoll-et.png")
    console.print(f"results written to {out}/ (models.json, summary.md, "
                  f"{', '.join(f'models-{load}.png' for load in loads)}, models-epoll-et.png)")
