"""`muxio bench --json` results read back and rendered: a Markdown table and a PNG chart per
workload, with the machine they were measured on. The documentation's Comparisons page is
made of these (docs/hooks/comparisons.py renders the checked-in JSON at build time):

    python -m muxio.bench.report docs/comparisons/echo.json      # the page section, to stdout
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muxio.bench.runner import Sample, TargetResult, plot_named


@dataclass
class BenchReport:
    """One `muxio bench WORKLOAD --json` file."""

    workload: str
    unit: str
    reference: str
    meta: dict[str, Any]
    results: list[TargetResult] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> BenchReport:
        data = json.loads(path.read_text())
        results = []
        for row in data["results"]:
            result = TargetResult(row["target"], row["kind"])
            result.samples = [Sample(**sample) for sample in row["samples"]]
            results.append(result)
        return cls(data["workload"], data["unit"], data["reference"], data.get("meta", {}),
                   results)

    def machine(self) -> str:
        """One sentence: where and when it ran, and how busy the host was."""
        meta = self.meta
        load = meta.get("load_average_at_start") or []
        cpus = meta.get("cpus", "?")
        busy = ""
        if load:
            shared = " (shared: other work was running)" if load[0] > float(cpus) else ""
            busy = f"; load average {load[0]:g} at the start on {cpus} CPUs{shared}"
        return (f"{meta.get('cpu_model', 'unknown CPU')}, {cpus} CPUs, "
                f"{meta.get('kernel', 'unknown kernel')}, Python {meta.get('python', '?')}, "
                f"{meta.get('date', 'date not recorded')}{busy}")

    def command(self) -> str:
        meta = self.meta
        parts = [f"muxio bench {self.workload}", f"--rounds {meta.get('rounds', '?')}",
                 f"--duration {meta.get('duration', '?')}"]
        if meta.get("backends"):
            parts.append(f"--backends {','.join(meta['backends'])}")
        return " ".join(parts) + f" --json {self.workload}.json"

    def table(self) -> str:
        """Markdown: medians, ratios to the reference measured in the same run."""
        reference = next(r for r in self.results if r.target == self.reference)
        ref_rate = reference.median("ops_per_second")
        ref_cpu = reference.median("server_cpu_us_per_op")
        unit, ref = self.unit, self.reference
        lines = [f"| target | {unit}/s | x {ref} | server CPU µs/{unit} | CPU x {ref} | "
                 f"{unit}/s min-max |", "|---|--:|--:|--:|--:|--:|"]
        for result in self.results:
            rate = result.median("ops_per_second")
            cpu = result.median("server_cpu_us_per_op")
            low, high = result.spread("ops_per_second")
            lines.append(f"| {result.target} | {rate:,.0f} | {rate / ref_rate:.2f} | "
                         f"{cpu:.1f} | {cpu / ref_cpu:.2f} | {low:,.0f}-{high:,.0f} |")
        return "\n".join(lines)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        plot_named(self.workload, self.unit, self.results, buffer)
        return buffer.getvalue()

    def section(self, image: str) -> str:
        """The page section: heading, command, machine, chart, table."""
        return "\n\n".join([
            f"## {self.workload}",
            f"Measured with `{self.command()}` on {self.machine()}. "
            f"{len(self.results[0].samples)} interleaved rounds; medians; ratios are to "
            f"{self.reference} measured in the same run.",
            f"![{self.workload}: {self.unit}/s and server CPU per {self.unit}]({image})",
            self.table()])


def main(argv: list[str]) -> int:
    for name in argv:
        report = BenchReport.load(Path(name))
        print(report.section(f"{report.workload}.png"))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
