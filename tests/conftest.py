"""Shared test setup: the backend x transport matrix, fd-leak checks, tool requirements."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from muxio.testing.matrix import (
    matrix_backends,
    poller_backends,
    stream_transports,
    unavailable_backends,
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"muxio matrix backends: {', '.join(matrix_backends())}"]
    for name, reason in unavailable_backends().items():
        lines.append(f"backend {name} not tested here: {reason}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "poller_backend" in metafunc.fixturenames:
        metafunc.parametrize("poller_backend", poller_backends())
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", matrix_backends())
    if "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", stream_transports())


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
