"""`muxio bench models` on a tiny budget (it runs, measures every column, writes JSON, charts
and summary.md), and its parsing and sentence generation on fixed inputs. Speed itself is
measured by running the benchmark, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from muxio.bench.models import (
    Cell,
    ModelTarget,
    perf_unavailable,
    skip_reason,
    summarise,
)
from muxio.bench.models_report import markdown_table, reference_count, summary_lines
from tests.tools import require_module


def test_targets_past_their_fd_limit_are_skipped_with_the_reason() -> None:
    select = ModelTarget("muxio/select", "event loop", "muxio", fd_limit=1024)
    assert skip_reason(select, 500, 400, 20000) is None
    reason = skip_reason(select, 5000, 500, 20000)
    assert reason is not None and "fds < 1024" in reason
    threads = ModelTarget("threads", "thread per connection", "peer", thread_stack_kib=512)
    reason = skip_reason(threads, 10000, 500, 4096)
    assert reason is not None and "ulimit -n" in reason


def _cell(target: str, connections: int, rate: float, rss_kib: int, **extra: float) -> Cell:
    cell = Cell("echo", target, connections, 100, 1, ok=True, operations=int(rate),
                ops_per_second=rate, server_cpu_us_per_op=1e6 / rate,
                rss_base_kib=20_000, rss_peak_kib=rss_kib,
                rss_per_connection_kib=(rss_kib - 20_000) / (connections + 100),
                threads_peak=connections + 3 if target == "threads" else 1)
    for name, value in extra.items():
        setattr(cell, name, value)
    return cell


def test_summary_lines_are_generated_from_the_medians() -> None:
    cells = [
        _cell("threads", 500, 9000, 60_000), _cell("threads", 5000, 6000, 220_000),
        _cell("muxio/epoll", 500, 20000, 25_000, polls_per_op=0.5, syscalls_per_op=2.5),
        _cell("muxio/epoll", 5000, 18000, 60_000, polls_per_op=0.2, syscalls_per_op=2.2),
        _cell("muxio/epoll-et", 5000, 19000, 58_000, polls_per_op=0.1, syscalls_per_op=2.0),
        _cell("muxio/epoll-et", 5000, 21000, 59_000, polls_per_op=0.3, syscalls_per_op=2.4),
    ]
    failed = Cell("echo", "threads", 10000, 100, 1, error="threads exhausted")
    summaries = summarise([*cells, failed])
    counts = [500, 5000, 10000]
    assert reference_count(summaries, "echo", counts) == 5000
    lines = summary_lines(summaries, ["echo"], counts, 512)
    assert lines["echo-throughput"] == (
        "echo at 5,000 connections: the thread host spends 167 µs of server CPU per msg, "
        "3.3x muxio/epoll-et's 50 µs; rates: muxio/epoll-et 20,000 msg/s, the thread host "
        "6,000 (0.30x).")
    assert lines["echo-memory"].startswith(
        "echo: for 5,000 clients (+100 idle) the thread host needs 215 MiB (39.2 KiB per "
        "connection, 5003 OS threads, 512 KiB stacks); muxio/epoll-et holds them in 57 MiB")
    assert lines["echo-edge"] == (
        "echo, epoll-et vs epoll (level-triggered) at 5,000: 0.2 vs 0.2 wakeups/msg, "
        "2.20 vs 2.20 syscalls/msg, 50.1 vs 55.6 CPU µs/msg.")
    table = markdown_table(summaries, [ModelTarget("threads", "t", "peer")], "echo", counts)
    assert "| 10000 | threads | failed |" in table


def test_bench_models_end_to_end(tmp_path: Path) -> None:
    require_module("matplotlib", "matplotlib")
    out = tmp_path / "models"
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "models", "--connections", "4",
         "--idle", "3", "--duration", "0.5", "--rounds", "1", "--backends", "epoll-et",
         "--peers", "threads", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "echo: 4 active + 3 idle connections" in result.stdout
    data = json.loads((out / "models.json").read_text())
    assert data["meta"]["thread_stack_kib"] == 512
    cells = {(cell["workload"], cell["target"]): cell for cell in data["cells"]}
    assert set(cells) == {(load, target) for load in ("echo", "http")
                          for target in ("threads", "muxio/epoll-et")}
    for cell in cells.values():
        assert cell["ok"], cell
        assert cell["ops_per_second"] > 0 and cell["server_cpu_us_per_op"] > 0
        assert cell["p50_ms"] is not None and cell["p99_ms"] >= cell["p50_ms"]
        assert cell["rss_peak_kib"] >= cell["rss_base_kib"] > 0
        if perf_unavailable() is None:
            assert cell["syscalls_per_op"] > 0
    # A thread per connection (4 active + 3 idle), and one loop thread for muxio.
    assert cells["echo", "threads"]["threads_peak"] >= 7
    assert cells["echo", "muxio/epoll-et"]["threads_peak"] == 1
    assert cells["echo", "muxio/epoll-et"]["polls_per_op"] > 0
    assert cells["echo", "threads"]["polls_per_op"] is None
    assert set(data["summary_lines"]) == {f"{load}-{chart}" for load in ("echo", "http")
                                          for chart in ("throughput", "memory", "edge")}
    assert "the thread host needs" in data["summary_lines"]["echo-memory"]
    for chart in ("models-echo.png", "models-http.png", "models-epoll-et.png"):
        assert (out / chart).read_bytes().startswith(b"\x89PNG")
    assert "| 4 | threads |" in (out / "summary.md").read_text()
    again = tmp_path / "again"  # the charts and tables redrawn from the JSON alone
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "models", "--from-json",
         str(out / "models.json"), "--out", str(again)], capture_output=True, text=True,
        timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert (again / "summary.md").read_text() == (out / "summary.md").read_text()
    assert (again / "models-epoll-et.png").read_bytes().startswith(b"\x89PNG")


def test_bench_models_user_errors_are_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "models", "--connections", "many"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "muxio: error: --connections 'many': give numbers, e.g. 50,500,5000"]
