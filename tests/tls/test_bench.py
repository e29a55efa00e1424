"""`muxio bench http --tls` end to end on a tiny budget, and the peers' own TLS hosting
the same handler (speed is measured by running the benchmark, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http.harness import serve_process
from tests.tls.harness import DEADLINE, REPO, Pki
from tests.tools import require_module, require_tool


@pytest.mark.parametrize("workload", ["http", "http-close"])
def test_bench_http_tls_runs_muxio_and_asyncio(workload: str, tmp_path: Path) -> None:
    require_tool("wrk", "wrk")
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", workload, "--tls", "--rounds", "1",
         "--duration", "2", "--backends", "epoll", "--peers", "asyncio", "--json", str(out)],
        capture_output=True, text=True, timeout=180, cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["meta"]["tls"] is True
    assert data["workload"] == f"{workload} (tls)"
    assert [row["target"] for row in data["results"]] == ["asyncio", "muxio/epoll"]
    for row in data["results"]:
        assert row["median_ops_per_second"] > 0
        assert row["median_server_cpu_us_per_op"] > 0


def test_bench_tls_refuses_what_it_cannot_compare() -> None:
    for argv, expected in ((["echo", "--tls"], "--tls is for the workloads http, "
                                                "http-close, not echo"),
                           (["http", "--tls", "--peers", "twisted"],
                            "--peers ['twisted'] unknown with --tls")):
        result = subprocess.run([sys.executable, "-m", "muxio", "bench", *argv],
                                capture_output=True, text=True, timeout=DEADLINE, cwd=REPO,
                                check=False)
        assert result.returncode == 2
        assert result.stderr.startswith(f"muxio: error: {expected}"), result.stderr


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_peer_loops_serve_https_with_their_own_tls(loop: str, pki: Pki) -> None:
    require_module(loop, loop)
    curl = require_tool("curl", "curl")
    argv = ["-m", "adapters", "--loop", loop, "--service", "http", "--host", "127.0.0.1",
            "--port", "0", "--tls-cert", str(pki.server_cert), "--tls-key",
            str(pki.server_key)]
    with serve_process(argv) as (_, port):
        result = subprocess.run([curl, "-sS", "--cacert", str(pki.ca), "--resolve",
                                 f"localhost:{port}:127.0.0.1", "-v",
                                 f"https://localhost:{port}/"], capture_output=True,
                                timeout=DEADLINE, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!\n"
    assert b"ALPN: server accepted http/1.1" in result.stderr


def test_twisted_refuses_tls_clearly(pki: Pki) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adapters", "--loop", "twisted", "--service", "http",
         "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)],
        capture_output=True, text=True, timeout=DEADLINE, cwd=REPO, check=False)
    assert result.returncode == 2
    assert "--tls-cert is not supported on twisted" in result.stderr
