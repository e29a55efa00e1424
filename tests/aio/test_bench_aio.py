"""`muxio bench aio-echo` / `aio-http` end to end on a tiny budget: asyncio apps on asyncio
and on muxio.aio, compared in one table (speed is measured by running the benchmark,
never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import require_module, require_tool


@pytest.mark.parametrize("workload", ["aio-echo", "aio-http"])
def test_bench_aio_workloads_run_and_compare(workload: str, tmp_path: Path) -> None:
    require_module("aiohttp", "aiohttp")
    if workload == "aio-http":
        require_tool("wrk", "wrk")
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", workload, "--rounds", "1", "--duration",
         "0.5", "--backends", "epoll-et", "--peers", "asyncio", "--json", str(out)],
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    assert "ratios are to asyncio" in result.stdout
    data = json.loads(out.read_text())
    assert [r["target"] for r in data["results"]] == ["asyncio", "muxio.aio/epoll-et"]
    assert [r["kind"] for r in data["results"]] == ["peer", "muxio"]
    for row in data["results"]:
        assert row["samples"][0]["operations"] > 0
        assert row["median_server_cpu_us_per_op"] > 0


def test_bench_aio_refuses_a_peer_that_cannot_host_asyncio_apps() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "aio-echo", "--peers", "twisted"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("muxio: error: --peers ['twisted'] unknown for aio-echo")
    assert "Traceback" not in result.stderr


def test_aio_servers_refuse_a_backend_without_muxio() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "muxio.bench.aio_servers", "--app", "echo", "--loop",
         "asyncio", "--backend", "epoll", "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--backend applies to --loop muxio only" in result.stderr
