"""`muxio bench` end to end on a tiny budget: it runs, compares, writes JSON and a plot.
(Speed itself is measured by running the benchmark, never asserted in tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import require_module, require_tool


def test_bench_echo_writes_table_json_and_plot(tmp_path: Path) -> None:
    require_module("matplotlib", "matplotlib")
    out, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "echo", "--rounds", "1", "--duration",
         "0.5", "--backends", "epoll,select", "--peers", "asyncio", "--json", str(out),
         "--plot", str(chart)], capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    assert "ratios are to asyncio" in result.stdout
    data = json.loads(out.read_text())
    assert [r["target"] for r in data["results"]] == ["asyncio", "muxio/epoll", "muxio/select"]
    for row in data["results"]:
        assert row["median_ops_per_second"] > 0
        assert row["samples"][0]["operations"] > 0
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_adapters_host_the_same_echo_handler() -> None:
    """asyncio, uvloop and Twisted run muxio's echo handler unchanged."""
    for loop in ("asyncio", "uvloop", "twisted"):
        require_module(loop, loop)
        code = (
            "import json,sys\n"
            "from muxio.bench.runner import ServerProcess, peer_target, free_port\n"
            "from muxio.bench.workloads import echo_load\n"
            f"server = ServerProcess(peer_target({loop!r}, 'echo'), free_port(), None)\n"
            "try:\n"
            "    print(echo_load(connections=5)(server.port, 0.3, None))\n"
            "finally:\n"
            "    server.stop()\n")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert int(result.stdout.strip()) > 0


def test_bench_chat_forwards_on_muxio_and_a_peer(tmp_path: Path) -> None:
    """The chat workload: muxio's chat server and the same handler on asyncio forward
    messages between the load generator's pairs (a SEND answered with ERROR fails)."""
    out = tmp_path / "chat.json"
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "chat", "--rounds", "1", "--duration",
         "0.5", "--backends", "epoll", "--peers", "asyncio", "--json", str(out)],
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [r["target"] for r in data["results"]] == ["asyncio", "muxio/epoll"]
    for row in data["results"]:
        assert row["samples"][0]["operations"] > 0


def test_bench_refuses_an_unknown_backend_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", "bench", "echo", "--backends",
                             "bogus", "--rounds", "1", "--duration", "0.1"],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert result.stderr.startswith("muxio: error: --backends: 'bogus' is not a backend")


@pytest.mark.parametrize(("flags", "message"), [
    (["--rounds", "0"], "muxio: error: --rounds must be >= 1, got 0"),
    (["--duration", "-1"], "muxio: error: --duration must be > 0 seconds, got -1"),
    (["--json", "/nonexistent-dir/x.json"], "muxio: error: --json /nonexistent-dir/x.json: "
                                            "the directory /nonexistent-dir does not exist"),
])
def test_bench_refuses_before_running_what_would_fail_late(flags: list[str],
                                                           message: str) -> None:
    """Zero rounds (no median) and an output path that cannot be written are refused before
    any server starts, in one line, not as a traceback after the run."""
    result = subprocess.run([sys.executable, "-m", "muxio", "bench", "echo", "--backends",
                             "epoll", "--peers", "asyncio", "--rounds", "1", "--duration",
                             "0.1", *flags],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert "ratios are to" not in result.stdout  # nothing was measured


def test_a_server_that_cannot_start_is_reported_with_its_own_error() -> None:
    from muxio.bench.runner import BenchError, ServerProcess, Target

    failing = Target("failing", (sys.executable, "-c",
                                 "import sys; print('muxio: error: port taken', "
                                 "file=sys.stderr); sys.exit(2)"), "muxio")
    with pytest.raises(BenchError, match="failing did not start: muxio: error: port taken"):
        ServerProcess(failing, 1, None)


def test_bench_http_protocol_minimal_adds_a_baseline_per_host(tmp_path: Path) -> None:
    """Each host serves the handler and, beside it, the minimal protocol; the handler's own
    CPU per request (the difference) is in the table and the JSON."""
    require_tool("wrk", "wrk")
    out = tmp_path / "http.json"
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "bench", "http", "--protocol", "minimal", "--rounds",
         "1", "--duration", "1", "--backends", "epoll", "--peers", "asyncio", "--json",
         str(out)], capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    assert "handler µs/req" in result.stdout
    rows = json.loads(out.read_text())["results"]
    assert [(r["target"], r["host"], r["baseline"]) for r in rows] == [
        ("asyncio", "asyncio", False), ("asyncio (minimal)", "asyncio", True),
        ("muxio/epoll", "muxio/epoll", False),
        ("muxio/epoll (minimal)", "muxio/epoll", True)]
    for full, minimal in (rows[0:2], rows[2:4]):
        assert minimal["handler_us_per_op"] is None
        assert full["handler_us_per_op"] == pytest.approx(
            full["median_server_cpu_us_per_op"] - minimal["median_server_cpu_us_per_op"])


def test_bench_protocol_minimal_is_for_http_only() -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", "bench", "echo", "--protocol",
                             "minimal", "--rounds", "1", "--duration", "0.1"],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("muxio: error: --protocol minimal is for the workloads "
                                     "http, http-close, not echo")
