"""A third-party backend joins through a real entry point (a dist-info on sys.path)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN_MODULE = '''
"""A third-party poller: the poll(2) backend under another name."""
from muxio.pollers import PollPoller


class PluginPoller(PollPoller):
    """poll(2) shipped by a plugin distribution"""
    name = "plugin-poll"


class UnavailablePoller(PollPoller):
    """a plugin that cannot run here"""
    name = "plugin-never"

    @classmethod
    def available(cls):
        return "needs the frobnicator device"
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    (tmp_path / "muxio_test_plugin.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    dist = tmp_path / "muxio_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: muxio-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[muxio.pollers]\n"
        "plugin-poll = muxio_test_plugin:PluginPoller\n"
        "plugin-never = muxio_test_plugin:UnavailablePoller\n"
        "plugin-broken = muxio_test_plugin_missing:Nothing\n")
    return tmp_path


def run_python(plugin_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    project = str(Path(__file__).parents[1])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{plugin_path}:{project}"},
                          cwd=plugin_path, check=False)


def test_plugin_shows_up_in_muxio_backends(plugin_path: Path) -> None:
    result = run_python(plugin_path, "-m", "muxio", "backends", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["plugin-poll"]["available"] is True
    assert rows["plugin-poll"]["source"].startswith("plugin (muxio-test-plugin")
    assert rows["plugin-never"]["available"] is False
    assert rows["plugin-never"]["reason"] == "needs the frobnicator device"
    assert rows["plugin-broken"]["available"] is False
    assert "failed to import" in rows["plugin-broken"]["reason"]


def test_plugin_is_usable_by_name(plugin_path: Path) -> None:
    code = ("from muxio.loop import Loop\n"
            "with Loop('plugin-poll') as loop:\n"
            "    loop.call_soon(loop.stop); loop.run_forever(); print(loop.backend)\n")
    result = run_python(plugin_path, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "plugin-poll"


def test_plugin_via_environment_variable(plugin_path: Path) -> None:
    code = "from muxio.loop import Loop\nprint(Loop().backend)\n"
    project = str(Path(__file__).parents[1])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{plugin_path}:{project}",
             "MUXIO_BACKEND": "plugin-poll"}, cwd=plugin_path)
    assert result.stdout.strip() == "plugin-poll", result.stderr
