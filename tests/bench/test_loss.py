"""`muxio bench loss`, bounded: a network namespace dropping 20 % of the packets in both
directions, where KCP must deliver every message intact and in order (CI runs as root), and
the one-line refusal without the privilege to create the namespace."""

from __future__ import annotations

import os

import pytest

from muxio.bench import loss as loss_bench
from muxio.cli.main import main
from tests.tools import require_module, require_tool


def _require_namespace_tools() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI runs as root: the loss benchmark test needs it", pytrace=False)
        pytest.skip("needs root (or CAP_NET_ADMIN) to create a network namespace")
    require_tool("ip", "iproute2")
    require_tool("nft", "nftables")
    require_tool("ethtool", "ethtool")


def test_kcp_delivers_everything_in_order_at_20_percent_loss() -> None:
    _require_namespace_tools()
    results = loss_bench.run_matrix([("kcp", "fast")], [0.2], rounds=1, messages=100,
                                    size=100, nbytes=256 * 1024, cap=60.0, backend="epoll")
    ping = next(r for r in results if r.workload == "pingpong")
    bulk = next(r for r in results if r.workload == "bulk")
    # the client compares every echo with what it sent: an error would name a difference
    assert ping.error is None and ping.done == 100
    assert bulk.error is None and bulk.done == 1 and bulk.goodput_mb_s > 0
    # 20 % of the packets were dropped: KCP had to send more than 2 per round trip
    assert ping.packets > 2 * ping.done
    row = loss_bench.summarise(results)[0]
    assert row.column == "muxio KCP fast" and row.p99 is not None


def test_without_the_privilege_it_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(loss_bench, "has_net_admin", lambda: False)
    assert main(["bench", "loss", "--loss", "5"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("muxio: error: bench loss needs root or CAP_NET_ADMIN")


def test_a_bad_loss_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "loss", "--loss", "5,abc"]) == 2
    assert capsys.readouterr().err.startswith("muxio: error: --loss")


def test_bench_kcp_shows_the_c_reference_column(capsys: pytest.CaptureFixture[str]) -> None:
    require_module("siokcp", "siokcp==0.0.5")
    assert main(["bench", "kcp", "--bytes", "262144", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "muxio (Python)" in out and "ikcp (C, siokcp)" in out
