"""What `muxio bench models` shows: tables, generated summary lines, plots, markdown.

Every sentence printed about the results is generated from the medians here (never
written by hand), so the docs page quotes figures that a rerun reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from muxio.bench.models import ModelTarget, Summary

THREADS = "threads"
UNITS = {"echo": "msg", "http": "req"}
COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, median key, format)
    ("{unit}/s (range)", "ops_per_second", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("CPU µs/{unit} (range)", "server_cpu_us_per_op", "{:.1f}"),
    ("CPU %", "server_cpu_percent", "{:.0f}"),
    ("RSS MiB", "rss_peak_kib", "{mib:.0f}"),
    ("KiB/conn", "rss_per_connection_kib", "{:.1f}"),
    ("threads", "threads_peak", "{:.0f}"),
    ("syscalls/{unit}", "syscalls_per_op", "{:.2f}"),
    ("wakeups/{unit}", "polls_per_op", "{:.3g}"),
    ("events/wakeup", "events_per_poll", "{:.3g}"),
)


def _format(key: str, fmt: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "rss_peak_kib":
        return fmt.format(mib=value / 1024)
    return fmt.format(value)


def _cell(summary: Summary, key: str, fmt: str) -> str:
    """The median, and for the figures that move most on a shared machine, the range of
    the rounds: '10,711 (7,085-11,234)'."""
    text = _format(key, fmt, summary.get(key))
    if key in summary.ranges and summary.rounds_ok > 1:
        low, high = summary.ranges[key]
        text += f" ({_format(key, fmt, low)}-{_format(key, fmt, high)})"
    return text


def _find(summaries: Sequence[Summary], workload: str, target: str,
          connections: int) -> Summary | None:
    for summary in summaries:
        if (summary.workload, summary.target, summary.connections) == (
                workload, target, connections):
            return summary
    return None


def _ok(summary: Summary | None) -> bool:
    return summary is not None and summary.rounds_ok > 0


def _cell_note(summary: Summary) -> str:
    if summary.skipped:
        return f"skipped: {summary.skipped}"
    return "failed: " + "; ".join(error[:160] for error in summary.errors)


def tables(summaries: Sequence[Summary], targets: Sequence[ModelTarget], workload: str,
           counts: Sequence[int]) -> list[Table]:
    unit = UNITS[workload]
    result = []
    for connections in counts:
        idle = next((s.idle for s in summaries if s.connections == connections), 0)
        table = Table(title=f"{workload}: {connections} active + {idle} idle connections "
                            f"(medians)")
        table.add_column("target")
        for header, _, _ in COLUMNS:
            table.add_column(header.format(unit=unit), justify="right")
        for target in targets:
            summary = _find(summaries, workload, target.name, connections)
            if summary is None:
                continue
            if not _ok(summary):
                table.add_row(target.name, _cell_note(summary))
                continue
            table.add_row(target.name, *(_cell(summary, key, fmt) for _, key, fmt in COLUMNS))
        result.append(table)
    return result


def markdown_table(summaries: Sequence[Summary], targets: Sequence[ModelTarget],
                   workload: str, counts: Sequence[int]) -> str:
    unit = UNITS[workload]
    headers = ["connections", "target", *(h.format(unit=unit) for h, _, _ in COLUMNS)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for connections in counts:
        for target in targets:
            summary = _find(summaries, workload, target.name, connections)
            if summary is None:
                continue
            if not _ok(summary):
                note = "skipped" if summary.skipped else "failed"
                lines.append(f"| {connections} | {target.name} | {note} |"
                             + " |" * (len(COLUMNS) - 1))
                continue
            cells = [_cell(summary, key, fmt) for _, key, fmt in COLUMNS]
            lines.append(f"| {connections} | {target.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- generated sentences ---------------------------------------------------------------------


def reference_count(summaries: Sequence[Summary], workload: str,
                    counts: Sequence[int]) -> int | None:
    """The largest connection count at which the thread host and at least one event loop
    both ran (the count the summary lines talk about)."""
    for connections in sorted(counts, reverse=True):
        threads = _find(summaries, workload, THREADS, connections)
        loops = [s for s in summaries if s.workload == workload and s.connections == connections
                 and s.target != THREADS and _ok(s)]
        if _ok(threads) and loops:
            return connections
    return None


def _ran(summaries: Sequence[Summary], workload: str, connections: int) -> list[Summary]:
    return [s for s in summaries
            if s.workload == workload and s.connections == connections and _ok(s)]


def throughput_line(summaries: Sequence[Summary], workload: str,
                    counts: Sequence[int]) -> str:
    """CPU per operation first (what a server costs, whatever share of the CPU it got),
    then the rates measured."""
    unit = UNITS[workload]
    connections = reference_count(summaries, workload, counts)
    if connections is None:
        return f"{workload}: the thread host and an event loop never both ran."
    ran = _ran(summaries, workload, connections)
    threads = _find(summaries, workload, THREADS, connections)
    assert threads is not None
    loops = [s for s in ran if s.target != THREADS]
    cheapest = min(loops, key=lambda s: s.get("server_cpu_us_per_op") or float("inf"))
    cpu = threads.get("server_cpu_us_per_op") or 0
    cheapest_cpu = cheapest.get("server_cpu_us_per_op") or 0
    line = (f"{workload} at {connections:,} connections: the thread host spends "
            f"{cpu:.0f} µs of server CPU per {unit}, ")
    if cheapest_cpu and cpu:
        line += f"{cpu / cheapest_cpu:.1f}x {cheapest.target}'s {cheapest_cpu:.0f} µs; "
    best = max(ran, key=lambda s: s.get("ops_per_second") or 0)
    rate = threads.get("ops_per_second") or 0
    best_rate = best.get("ops_per_second") or 0
    if best.target == THREADS:
        line += f"rates: the thread host is fastest here, {rate:,.0f} {unit}/s"
    else:
        line += (f"rates: {best.target} {best_rate:,.0f} {unit}/s, the thread host "
                 f"{rate:,.0f} ({rate / best_rate:.2f}x)")
    return line + "."


def memory_line(summaries: Sequence[Summary], workload: str, counts: Sequence[int],
                stack_kib: int | None) -> str:
    connections = reference_count(summaries, workload, counts)
    if connections is None:
        return f"{workload}: the thread host and an event loop never both ran."
    ran = [s for s in _ran(summaries, workload, connections) if s.target != THREADS]
    lightest = min(ran, key=lambda s: s.get("rss_peak_kib") or 0)
    threads = _find(summaries, workload, THREADS, connections)
    assert threads is not None
    idle = threads.idle
    stack = f", {stack_kib} KiB stacks" if stack_kib else ""
    return (f"{workload}: for {connections:,} clients (+{idle} idle) the thread host needs "
            f"{(threads.get('rss_peak_kib') or 0) / 1024:.0f} MiB "
            f"({threads.get('rss_per_connection_kib') or 0:.1f} KiB per connection, "
            f"{_threads(threads)}{stack}); "
            f"{lightest.target} holds them in {(lightest.get('rss_peak_kib') or 0) / 1024:.0f}"
            f" MiB ({lightest.get('rss_per_connection_kib') or 0:.1f} KiB per connection, "
            f"{_threads(lightest)}).")


def _threads(summary: Summary) -> str:
    count = round(summary.get("threads_peak") or 0)
    return f"{count} OS thread{'' if count == 1 else 's'}"


def edge_line(summaries: Sequence[Summary], workload: str, counts: Sequence[int]) -> str:
    unit = UNITS[workload]
    parts = []
    for connections in counts:
        level = _find(summaries, workload, "muxio/epoll", connections)
        edge = _find(summaries, workload, "muxio/epoll-et", connections)
        if not (_ok(level) and _ok(edge)):
            continue
        assert level is not None and edge is not None
        text = (f"{connections:,}: {edge.get('polls_per_op') or 0:.3g} vs "
                f"{level.get('polls_per_op') or 0:.3g} wakeups/{unit}")
        if edge.get("syscalls_per_op") is not None and level.get("syscalls_per_op") is not None:
            text += (f", {edge.get('syscalls_per_op'):.2f} vs "
                     f"{level.get('syscalls_per_op'):.2f} syscalls/{unit}")
        text += (f", {edge.get('server_cpu_us_per_op') or 0:.1f} vs "
                 f"{level.get('server_cpu_us_per_op') or 0:.1f} CPU µs/{unit}")
        parts.append(text)
    if not parts:
        return f"{workload}: epoll and epoll-et did not both run."
    return f"{workload}, epoll-et vs epoll (level-triggered) at " + "; ".join(parts) + "."


def summary_lines(summaries: Sequence[Summary], workloads: Sequence[str],
                  counts: Sequence[int], stack_kib: int | None) -> dict[str, str]:
    """{chart name: its one-line summary}."""
    lines = {}
    for workload in workloads:
        lines[f"{workload}-throughput"] = throughput_line(summaries, workload, counts)
        lines[f"{workload}-memory"] = memory_line(summaries, workload, counts, stack_kib)
        lines[f"{workload}-edge"] = edge_line(summaries, workload, counts)
    return lines


# -- plots ------------------------------------------------------------------------------------


_COLORS = {"threads": "tab:red", "asyncio": "tab:gray", "uvloop": "black",
           "twisted": "tab:brown", "muxio/epoll": "tab:blue", "muxio/epoll-et": "tab:orange",
           "muxio/selectors": "tab:green", "muxio/poll": "tab:purple",
           "muxio/select": "tab:olive"}
"""Fixed colours, so that the same target looks the same in every chart (red: threads)."""


def _style(target: str) -> dict[str, object]:
    color = _COLORS.get(target, "tab:cyan")
    if target == THREADS:
        return {"color": color, "linewidth": 2.5, "marker": "s"}
    if target in ("asyncio", "uvloop", "twisted"):
        return {"color": color, "linestyle": "--", "marker": "^"}
    return {"color": color, "marker": "o"}


def _series(summaries: Sequence[Summary], workload: str, target: str,
            key: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
    points = sorted((s.connections, (s.get(key) or 0) * scale) for s in summaries
                    if s.workload == workload and s.target == target and _ok(s)
                    and s.get(key) is not None)
    return [x for x, _ in points], [y for _, y in points]


def plot_workload(summaries: Sequence[Summary], targets: Sequence[ModelTarget],
                  workload: str, lines: dict[str, str], path: Path) -> None:
    """Throughput, CPU per operation and RSS against connections (log x), every target a
    line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = UNITS[workload]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 5.2))
    for target in targets:
        for axis, key, scale in ((left, "ops_per_second", 1.0),
                                 (middle, "server_cpu_us_per_op", 1.0),
                                 (right, "rss_peak_kib", 1 / 1024)):
            x, y = _series(summaries, workload, target.name, key, scale)
            if x:
                axis.plot(x, y, label=target.name, **_style(target.name))
    left.set_title(f"{workload}: {unit}/s (higher is better)", fontsize=10)
    middle.set_title(f"server CPU µs per {unit}, log (lower is better)", fontsize=10)
    right.set_title("server RSS MiB, log (lower is better)", fontsize=10)
    counts = sorted({s.connections for s in summaries if s.workload == workload})
    for axis in (left, middle, right):
        _log_connections(axis, counts)
    for axis in (middle, right):
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(_plain())
        axis.yaxis.set_minor_formatter(_plain())
    left.legend(fontsize=8)
    _captions(figure, [lines[f"{workload}-throughput"], lines[f"{workload}-memory"]])
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_edge(summaries: Sequence[Summary], workloads: Sequence[str],
              lines: dict[str, str], path: Path) -> None:
    """epoll (level) vs epoll-et: wakeups, syscalls and CPU per operation against
    connections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("polls_per_op", "poller wakeups per operation, log (poller statistics)"),
              ("syscalls_per_op", "server syscalls per operation (perf)"),
              ("server_cpu_us_per_op", "server CPU µs per operation"))
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 5.2))
    for workload in workloads:
        for target, style in (("muxio/epoll", "-"), ("muxio/epoll-et", "--")):
            marker = "o" if workload == "echo" else "s"
            for axis, (key, _) in zip(axes, panels, strict=True):
                x, y = _series(summaries, workload, target, key)
                if x:
                    axis.plot(x, y, linestyle=style, marker=marker,
                              label=f"{workload} {target.split('/')[1]}")
    counts = sorted({s.connections for s in summaries})
    for axis, (_, title) in zip(axes, panels, strict=True):
        axis.set_title(title, fontsize=10)
        _log_connections(axis, counts)
        axis.legend(fontsize=8)
    axes[0].set_yscale("log")
    _captions(figure, [lines[f"{workload}-edge"] for workload in workloads])
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plain() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _position: f"{value:,.0f}")


def _log_connections(axis: Any, counts: Sequence[int]) -> None:
    """Log x, ticked at the measured connection counts, labelled 50, 500, 5,000."""
    from matplotlib.ticker import NullFormatter

    axis.set_xscale("log")
    axis.set_xticks(counts)
    axis.xaxis.set_major_formatter(_plain())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel("active connections (log scale)")
    axis.grid(True, which="both", alpha=0.3)


def _captions(figure: object, captions: Sequence[str]) -> None:
    import textwrap

    text = "\n".join(textwrap.fill(caption, 170) for caption in captions)
    lines = text.count("\n") + 1
    bottom = min(0.4, 0.02 + 0.035 * lines)
    figure.tight_layout(rect=(0, bottom, 1, 1))  # type: ignore[attr-defined]
    figure.text(0.01, 0.01, text, fontsize=8, va="bottom")  # type: ignore[attr-defined]


def markdown(summaries: Sequence[Summary], targets: Sequence[ModelTarget],
             workloads: Sequence[str], counts: Sequence[int], *, lines: dict[str, str],
             meta: dict[str, object]) -> str:
    parts = ["# muxio bench models", "",
             "Generated by `muxio bench models`; medians over "
             f"{meta.get('rounds')} interleaved rounds of {meta.get('duration')} s.", "",
             f"Host: {meta.get('host')}", ""]
    for workload in workloads:
        parts += [f"## {workload}", "", markdown_table(summaries, targets, workload, counts),
                  "", f"- {lines[f'{workload}-throughput']}",
                  f"- {lines[f'{workload}-memory']}", f"- {lines[f'{workload}-edge']}", ""]
    skipped = sorted({f"{s.target} at {s.connections}: {s.skipped}" for s in summaries
                      if s.skipped})
    failed = sorted({f"{s.workload} {s.target} at {s.connections}: {error}"
                     for s in summaries for error in s.errors})
    if skipped or failed:
        parts += ["## Not measured", ""] + [f"- {line}" for line in skipped + failed] + [""]
    return "\n".join(parts)
