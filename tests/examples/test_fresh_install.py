"""The user's path from nothing: a new virtual environment, `pip install` of muxio from the
repository (and of the example poller plug-in, examples/poller_plugin), then a 15-line test
file of the user's own that uses only the pytest plugin runs their handler on every
backend x transport, the plug-in's backend included. Everything runs outside the
repository, so only what pip installed (entry points included) can make it work."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxio.pollers.registry import default_registry
from muxio.transports.registry import STREAM_TRANSPORTS
from tests.processes import DEADLINE, REPO, started

EXAMPLES = REPO / "examples"
PLUGIN_BACKEND = "example-poll"
USER_TEST = '''\
import muxio
import pytest


class Shout(muxio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data.upper())


@pytest.mark.muxio_matrix
def test_shout(stream_pair):
    pair = stream_pair(server=Shout)
    pair.client_transport.write(b"hello")
    pair.run_until(lambda: pair.client.received == b"HELLO")
'''


class Venv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = str(root / "bin" / "python")

    def env(self) -> dict[str, str]:
        """No PYTHONPATH: only the venv (and the interpreter's site-packages) count."""
        return {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "HOME": str(self.root),
                "PYTHONUNBUFFERED": "1"}

    def run(self, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.python, *argv], capture_output=True, text=True, cwd=cwd,
                              env=self.env(), timeout=DEADLINE * 8, check=False)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """A new venv with muxio and the example plug-in pip-installed from copies of their
    sources (a build writes beside its source). The dependencies (pytest, dnspython,
    httptools, rich) come from the interpreter's own site-packages, so no network is
    needed for them; muxio itself only from the venv."""
    work = tmp_path_factory.mktemp("fresh")
    source = work / "muxio-src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("muxio", "adapters"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    plugin = work / "poller_plugin"
    shutil.copytree(EXAMPLES / "poller_plugin", plugin)
    created = Venv(work / "venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(created.root)], check=True, timeout=DEADLINE * 4)
    subprocess.run([sys.executable, "-m", "pip", "--python", created.python, "install",
                    "--quiet", "--no-deps", "--disable-pip-version-check", str(source),
                    str(plugin)], check=True, capture_output=True, timeout=DEADLINE * 10)
    yield created


def test_fresh_install(venv: Venv, tmp_path: Path) -> None:
    """One test (the venv is built once, on one worker), two stories."""
    a_users_15_line_test_file_runs_on_the_matrix(venv, tmp_path / "user")
    the_poller_plugin_joins_backends_and_the_matrix(venv, tmp_path)


def a_users_15_line_test_file_runs_on_the_matrix(venv: Venv, tmp_path: Path) -> None:
    tmp_path.mkdir()
    assert len([line for line in USER_TEST.splitlines() if line.strip()]) <= 15
    (tmp_path / "test_shout.py").write_text(USER_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = venv.run("-m", "pytest", "-v", "-p", "no:xdist", "-p", "no:cacheprovider",
                      cwd=tmp_path)
    backends = [*default_registry().matrix_names(), PLUGIN_BACKEND]  # no narrowing there
    cases = {f"test_shout[{backend}-{transport}] PASSED" for backend in backends
             for transport in STREAM_TRANSPORTS}
    assert all(case in result.stdout for case in cases), result.stdout[-3000:] + result.stderr
    assert f"{len(cases)} passed" in result.stdout
    where = venv.run("-c", "import muxio; print(muxio.__file__)", cwd=tmp_path).stdout
    assert where.startswith(str(venv.root)), where


def the_poller_plugin_joins_backends_and_the_matrix(venv: Venv, tmp_path: Path) -> None:
    listed = venv.run("-m", "muxio", "backends", "--json", cwd=tmp_path)
    row = next(row for row in json.loads(listed.stdout) if row["name"] == PLUGIN_BACKEND)
    assert row["available"] and row["source"].startswith("plugin (muxio-example-poller")
    echo = [str(EXAMPLES / "echo_server.py"), "--backend", PLUGIN_BACKEND, "--port", "0"]
    with started(echo, cwd=tmp_path, env=venv.env(), python=venv.python) as server:
        with socket.create_connection(("localhost", server.port), timeout=DEADLINE) as client:
            client.sendall(b"via the plug-in")
            assert client.recv(64) == b"via the plug-in"
        assert server.interrupt()[0] == 0
    # examples/test_my_handler.py, the user's suite, now runs on the plug-in's backend too.
    result = venv.run("-m", "pytest", "test_my_handler.py", "-v", "-p", "no:xdist",
                      cwd=EXAMPLES)
    cases = (len(default_registry().matrix_names()) + 1) * len(STREAM_TRANSPORTS) * 2
    assert f"{cases} passed" in result.stdout, result.stdout[-3000:] + result.stderr
    for transport in STREAM_TRANSPORTS:
        assert f"test_set_get_delete[{PLUGIN_BACKEND}-{transport}] PASSED" in result.stdout
