"""The `models` workload of `muxio bench`: muxio's echo and HTTP handlers from 50 to 10 000
connections on a thread per connection (adapters/threads_host), asyncio, uvloop and every
muxio backend; its own options (added to `muxio bench`), tables, charts and summary.md.

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
from muxio.bench.runner import BenchError
from muxio.bench.workloads import cpu_count
from muxio.errors import ConfigError
from muxio.transports.tcp import system_backlog

WORKLOAD_NAMES = ("models",)
MODEL_PEERS = ("asyncio", "uvloop", "twisted", "threads")


def add_arguments(bench: argparse.ArgumentParser) -> None:
    models = bench.add_argument_group("models workload (muxio bench models)")
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


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def run(args: argparse.Namespace) -> int:
    return run_models(args)


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
