"""`muxio bench scale` end to end on a tiny budget: idle connections held beside the
ping-pong, per backend and peer, then workers; JSON and a plot. (Speed and memory are
measured by running the benchmark, never asserted in tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from muxio.bench.runner import muxio_target
from muxio.bench.scale import FD_MARGIN, levels_for
from tests.tools import require_module


def test_bench_scale_writes_table_json_and_plot(tmp_path: Path) -> None:
    require_module("matplotlib", "matplotlib")
    out, chart = tmp_path / "scale.json", tmp_path / "scale.png"
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "scale", "--idle-levels", "0,40", "--rounds",
         "1", "--duration", "0.3", "--backends", "epoll", "--peers", "asyncio",
         "--workers", "2", "--held-per-worker", "30", "--json", str(out), "--plot",
         str(chart)], capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [r["target"] for r in data["results"]] == ["asyncio", "muxio/epoll"]
    for row in data["results"]:
        points = row["points"]
        assert [point["idle"] for point in points] == [0, 40]
        assert all(point["median_messages_per_second"] > 0 for point in points)
        assert points[0]["rss_bytes_per_idle_connection"] is None  # no idle: no ratio
        assert isinstance(points[1]["rss_bytes_per_idle_connection"], float)
        assert points[1]["samples"][0]["idle_held"] == 40
    workers = data["workers"]
    assert [(entry["workers"], entry["held"]) for entry in workers] == [(2, 60)]
    assert all(entry["messages_per_second_held"] > 0 for entry in workers)
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_select_stops_at_its_fd_limit_with_its_own_last_point() -> None:
    target = muxio_target("select", "echo")
    room = 1024 - FD_MARGIN
    assert levels_for(target, [0, 1000, 5000], 1024) == [0, room]
    assert levels_for(target, [0, 500], 1024) == [0, 500]
    assert levels_for(target, [0, 1000, 5000], None) == [0, 1000, 5000]


@pytest.mark.parametrize(("arguments", "message"), [
    (["--idle-levels", "0,lots"],
     "--idle-levels '0,lots': give numbers separated by commas"),
    (["--idle-levels", "-5"], "--idle-levels '-5': give numbers >= 0"),
    (["--workers", "1,0"], "--workers '1,0': give numbers >= 1"),
    (["--held-per-worker", "0"], "--held-per-worker 0: give 1 or more"),
    (["--peers", "twisted"], "--peers ['twisted'] unknown for scale; choose from asyncio"),
    (["--tls"], "--tls is not for the scale workload"),
    (["--rounds", "0"], "--rounds must be >= 1, got 0"),
    (["--idle-levels", "0,999999"], "999999 idle connections need an open-file limit"),
])
def test_bench_scale_argument_errors_are_one_line(arguments: list[str],
                                                  message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", "bench", "scale", "--backends",
                             "epoll", "--peers", "", "--workers", "0", *arguments],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no traceback
    assert result.stderr.startswith("muxio: error: ")
    assert message in result.stderr
