"""The documentation site builds strictly: no broken link, no missing page or reference,
every docstring the reference pages name is found, the Comparisons page renders from the
checked-in `muxio bench` JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from muxio.bench.report import BenchReport
from tests.tools import require_module

REPO = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "matplotlib"):
        require_module(module, "-e '.[docs]'")  # the docs extra: mkdocs-material, ...
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        capture_output=True, text=True, cwd=REPO, timeout=600, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-5000:]
    comparisons = (site / "comparisons" / "index.html").read_text()
    for data in sorted((REPO / "docs" / "comparisons").glob("*.json")):
        workload = json.loads(data.read_text())["workload"]
        assert (site / "comparisons" / f"{workload}.png").read_bytes().startswith(b"\x89PNG")
        assert f'src="{workload}.png"' in comparisons
    reference = (site / "reference" / "api" / "index.html").read_text()
    assert "Listen on" in reference and "TransportOptionError" in reference


def test_every_checked_in_bench_result_names_its_machine() -> None:
    results = sorted((REPO / "docs" / "comparisons").glob("*.json"))
    assert {path.stem for path in results} >= {"echo", "http", "chat"}
    for path in results:
        report = BenchReport.load(path)
        assert report.meta.get("cpu_model") and report.meta.get("load_average_at_start")
        assert "CPUs" in report.machine() and report.table().count("\n") == len(report.results) + 1
