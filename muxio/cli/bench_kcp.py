"""The KCP workloads of `muxio bench`: `loss` (a lossy link, TCP vs KCP vs the C ikcp) and
`kcp` (the in-memory core, ours vs the C reference). They compare transports rather than
one handler across loops, so they have their own options (added to `muxio bench`)."""

from __future__ import annotations

import argparse
import platform

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from muxio.bench import loss as loss_bench
from muxio.errors import ConfigError
from muxio.transports.kcp.core import PROFILES

WORKLOAD_NAMES = ("kcp", "loss")


def add_arguments(bench: argparse.ArgumentParser) -> None:
    group = bench.add_argument_group("loss and kcp workloads")
    group.add_argument("--loss", default="0,1,5,10,20",
                       help="loss: packet loss levels in percent (default: 0,1,5,10,20)")
    group.add_argument("--kinds", default="tcp,kcp,ckcp",
                       help="loss: tcp, kcp (muxio), ckcp (the C ikcp via siokcp)")
    group.add_argument("--profiles", default="fast",
                       help=f"loss/kcp: KCP profiles ({', '.join(sorted(PROFILES))})")
    group.add_argument("--messages", type=int, default=2000,
                       help="loss: ping-pong messages per run (default: 2000)")
    group.add_argument("--size", type=int, default=100, help="loss: message size in bytes")
    group.add_argument("--bytes", type=int, default=4 << 20,
                       help="loss: bulk transfer size; kcp: bytes moved per run (default: 4 MiB)")
    group.add_argument("--cap", type=float, default=150.0,
                       help="loss: seconds a run may take before it is cut (default: 150)")
    group.add_argument("--workloads", default="pingpong,bulk",
                       help="loss: pingpong, bulk or both")
    group.add_argument("--cdf-loss", type=float, default=10.0,
                       help="loss: the loss level (percent) of the RTT CDF plot")


def run(args: argparse.Namespace) -> int:
    if args.workload == "loss":
        return run_loss(args)
    return run_kcp(args)


def _profiles(args: argparse.Namespace) -> list[str]:
    names = [name.strip() for name in args.profiles.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROFILES]
    if unknown or not names:
        raise ConfigError(f"--profiles {unknown}: choose from {', '.join(sorted(PROFILES))}")
    return names


def run_loss(args: argparse.Namespace) -> int:
    try:
        losses = [float(level) / 100 for level in args.loss.split(",") if level.strip()]
    except ValueError:
        raise ConfigError(f"--loss {args.loss!r}: give percentages like 0,1,5,10,20") from None
    if not losses or not all(0 <= level < 1 for level in losses):
        raise ConfigError(f"--loss {args.loss!r}: each level must be in [0, 100)")
    profiles = _profiles(args)
    kinds: list[tuple[str, str]] = []
    for kind in (name.strip() for name in args.kinds.split(",") if name.strip()):
        if kind == "tcp":
            kinds.append(("tcp", profiles[0]))
        elif kind in ("kcp", "ckcp"):
            kinds += [(kind, profile) for profile in profiles]
        else:
            raise ConfigError(f"--kinds {kind!r}: choose from tcp, kcp, ckcp")
    workloads = [name.strip() for name in args.workloads.split(",") if name.strip()]
    if not workloads or any(name not in ("pingpong", "bulk") for name in workloads):
        raise ConfigError(f"--workloads {args.workloads!r}: choose pingpong, bulk or both")
    loss_bench.check_requirements()  # LossBenchError: one line, exit 2
    backend = args.backends.split(",")[0] if args.backends else None
    console = Console(width=max(Console().width, 130))
    console.print(f"[bold]loss[/bold]: {args.messages} x {args.size} B ping-pong and "
                  f"{args.bytes / 2**20:g} MiB bulk at {', '.join(f'{x:.0%}' for x in losses)} "
                  f"loss (both directions), {args.rounds} interleaved rounds, backend "
                  f"{backend or 'auto'}")
    with Progress(console=console, transient=True) as progress:
        total = len(losses) * args.rounds * len(workloads) * len(kinds)
        task = progress.add_task("loss", total=total)
        results = loss_bench.run_matrix(
            kinds, losses, rounds=args.rounds, messages=args.messages, size=args.size,
            nbytes=args.bytes, cap=args.cap, backend=backend, workloads=workloads,
            progress=lambda what: progress.update(task, advance=1, description=what))
    console.print(render_loss_table(loss_bench.summarise(results)))
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "rounds": args.rounds, "messages": args.messages, "size": args.size,
            "bytes": args.bytes, "cap": args.cap, "backend": backend}
    if args.json:
        loss_bench.to_json(results, args.json, meta)
        console.print(f"runs written to {args.json}")
    if args.plot:
        loss_bench.plot(results, args.plot, args.cdf_loss / 100)
        console.print(f"charts written to {args.plot}")
    return 0


def render_loss_table(rows: list[loss_bench.Row]) -> Table:
    table = Table(title="medians over rounds; RTT in ms; packets counted by nftables")
    for column in ("loss", "transport", "p50", "p99", "max", "done", "pkts/msg",
                   "bulk MB/s", "errors"):
        table.add_column(column, justify="left" if column in ("transport", "errors")
                         else "right")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for row in rows:
        table.add_row(f"{row.loss:.0%}", row.column, ms(row.p50), ms(row.p99), ms(row.max),
                      row.done, ms(row.packets_per_message), ms(row.goodput_mb_s),
                      "; ".join(row.errors)[:60])
    return table


def run_kcp(args: argparse.Namespace) -> int:
    from muxio.bench import kcp_core

    profiles = _profiles(args)
    console = Console(width=max(Console().width, 130))
    console.print(f"[bold]kcp[/bold]: in-memory core, {args.bytes / 2**20:g} MiB per run, "
                  f"{args.rounds} interleaved rounds, profiles {', '.join(profiles)}")
    results = kcp_core.compare(profiles, nbytes=args.bytes, rounds=args.rounds)
    console.print(kcp_core.render(results))
    if args.json:
        args.json.write_text(kcp_core.to_json(results))
        console.print(f"results written to {args.json}")
    if args.plot:
        console.print("(no chart for the kcp workload: the table is the result)")
    return 0

