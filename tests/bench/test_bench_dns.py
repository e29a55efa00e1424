"""`muxio bench dns` end to end on a tiny budget: dnsperf against muxio's DNS server (one
and two workers) beside nsd, all serving the zone written before any of them started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import require_tool


def test_bench_dns_measures_muxio_workers_beside_nsd(tmp_path: Path) -> None:
    require_tool("dnsperf", "dnsperf")
    require_tool("nsd", "nsd")
    out = tmp_path / "dns.json"
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "dns", "--rounds", "1", "--duration", "1",
         "--backends", "epoll", "--peers", "nsd", "--workers", "1,2", "--json", str(out)],
        capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr
    assert "ratios are to nsd" in result.stdout
    data = json.loads(out.read_text())
    assert data["reference"] == "nsd"
    assert data["meta"]["workers"] == [1, 2]
    assert [r["target"] for r in data["results"]] == ["nsd", "muxio/epoll", "muxio/epoll x2"]
    for row in data["results"]:
        assert row["samples"][0]["operations"] > 0  # answered queries, counted by dnsperf


@pytest.mark.parametrize(("arguments", "message"), [
    (["--peers", "asyncio"], "--peers ['asyncio'] unknown for dns; choose from nsd, twisted"),
    (["--tls"], "--tls is not for the dns workload"),
    (["--workers", "two"], "--workers 'two': give numbers separated by commas"),
])
def test_bench_dns_argument_errors_are_one_line(arguments: list[str], message: str) -> None:
    require_tool("dnsperf", "dnsperf")
    result = subprocess.run([sys.executable, "-m", "muxio", "bench", "dns", "--backends",
                             "epoll", *arguments], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no traceback
    assert result.stderr.startswith("muxio: error: ")
    assert message in result.stderr


def test_bench_dns_without_dnsperf_names_the_package(tmp_path: Path) -> None:
    """No dnsperf on PATH: one line naming the package, before any server starts."""
    result = subprocess.run([sys.executable, "-m", "muxio", "bench", "dns", "--backends",
                             "epoll"], capture_output=True, text=True, timeout=120,
                            check=False, env={**os.environ, "PATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == ("muxio: error: dnsperf is not installed: apt-get "
                                     "install dnsperf")
