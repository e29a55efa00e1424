"""What machine a benchmark ran on, and how busy it was: recorded with every result so
that a number is never quoted without its context (docs/comparisons.md shows it)."""

from __future__ import annotations

import datetime
import os
import platform


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_facts() -> dict[str, object]:
    """CPU model, kernel, Python, and the load average right now (1, 5, 15 minutes): a
    load above the CPU count means other work shared the machine during the run."""
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = []
    return {"cpu_model": cpu_model(), "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "machine": platform.machine(),
            "load_average_at_start": load,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
