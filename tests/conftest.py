"""Shared test setup: the backend x transport matrix comes from muxio's own pytest plugin
(`muxio.testing.plugin`, the one users get; `muxio_matrix = true` in pyproject.toml turns
it on for every test here), plus the poller-level matrix, fd-leak checks per module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from muxio.testing.matrix import poller_backends

# Loaded by its pytest11 entry point when muxio is installed; named here as well so that
# the suite runs the same with plugin autoloading off.
pytest_plugins = ["muxio.testing.plugin"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "poller_backend" in metafunc.fixturenames:
        metafunc.parametrize("poller_backend", poller_backends())


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.fixture(autouse=True, scope="module")
def _no_fd_leaks_per_module() -> Iterator[None]:
    """fds in /proc/self/fd before and after each test module are equal."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    # listdir's own fd is closed by then; anything left was opened by the module's tests.
    details = {fd: _describe_fd(fd) for fd in leaked}
    assert not leaked, f"file descriptors leaked by this module: {details}"


def _describe_fd(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"
