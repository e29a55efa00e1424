"""MkDocs hook: the Comparisons page from the checked-in `muxio bench --json` results.

At build time, each docs/comparisons/WORKLOAD.json becomes a PNG chart (comparisons/
WORKLOAD.png, generated in memory, never checked in) and a section of comparisons.md
(machine, command, chart, table), replacing the page's `<!-- muxio-bench-results -->`
line. The rendering is `muxio.bench.report`; rerun `muxio bench ... --json` and rebuild to
update the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from muxio.bench.report import BenchReport

MARKER = "<!-- muxio-bench-results -->"
DATA = "comparisons"
PAGE = "comparisons.md"


def _reports(config: Any) -> list[BenchReport]:
    folder = Path(config["docs_dir"]) / DATA
    order = {"echo": 0, "http": 1, "chat": 2}
    paths = sorted(folder.glob("*.json"), key=lambda path: (order.get(path.stem, 9), path.stem))
    return [BenchReport.load(path) for path in paths]


def on_files(files: Files, config: Any) -> Files:
    for report in _reports(config):
        files.append(File.generated(config, f"{DATA}/{report.workload}.png",
                                    content=report.png()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its {MARKER} line: the results have nowhere to go")
    sections = [report.section(f"{DATA}/{report.workload}.png") for report in _reports(config)]
    if not sections:
        raise ValueError(f"no {DATA}/*.json results: run `muxio bench WORKLOAD --json ...`")
    return markdown.replace(MARKER, "\n\n".join(sections))
