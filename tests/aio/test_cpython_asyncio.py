"""CPython's own asyncio test suite, run against muxio.aio on each backend.

Each (module, backend) pair runs in its own process (tests/aio/cpython_suite.py: the
mixins subclassed with our loop factory, or muxio's policy installed), so the pairs spread
over xdist workers and a crash or hang names its test. A pair passes when every failure
is a documented, deliberate difference, listed in KNOWN_DIFFERENCES below per module and
backend with its reason (today one test, on the uring backend; everything else that
passes on asyncio's own loop passes on ours).
Two tests of test_ssl drive asyncio's private SSLProtocol object, which muxio.aio's TLS
(muxio's layer) does not have: the runner skips them with that reason
(cpython_suite.NOT_RUN).
A test that fails only once, and passes when rerun alone, is reported as flaky (the host
is shared) but does not fail the pair. A known difference that starts passing fails the
pair, so the list stays true.

What runs by default (CI): every module on the edge-triggered backend (the one most
unlike asyncio's selectors), and the modules that exercise the loop's I/O (events,
sockets, sendfile, streams, servers, buffered protocols) on every other backend; the
scheduling modules (tasks, locks, queues...) run the same code on every backend. test_ssl
(~15 s a backend, mostly its own sleeps) and test_sslproto run on the edge-triggered
backend only: TLS is muxio's layer above the TCP transport, whose backend-specific part
the I/O modules cover (their TLS tests included), and tests/aio/test_tls_asyncio.py runs
TLS through muxio.aio on every backend.
`MUXIO_CPYTHON_SUITE=full` runs every module on every backend (test_tasks alone takes
~40 s per backend, and 660 of its ~910 tests use asyncio's fake TestLoop, not ours).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from muxio.testing.matrix import matrix_backends

SUITE = Path(__file__).with_name("cpython_suite.py")
ENV_FULL = "MUXIO_CPYTHON_SUITE"
IO_MODULES = ("test_events", "test_sock_lowlevel", "test_sendfile", "test_streams",
              "test_server", "test_buffered_proto")
"""What differs from one backend to the next: fds, sockets, transports, servers (and,
inside test_events, subprocesses, pipes and signals)."""
ALL_MODULES = (*IO_MODULES, "test_subprocess", "test_tasks", "test_taskgroups",
               "test_timeouts", "test_queues", "test_locks", "test_waitfor", "test_threads",
               "test_context", "test_futures2", "test_ssl", "test_sslproto")
"""Not here: test_runners and test_pep492 build asyncio.BaseEventLoop with mocks of their
own, whatever the policy, so they never meet muxio.aio (tests/aio/test_loop_surface.py
checks asyncio.Runner and asyncio.run on it)."""
EVERY_MODULE_ON = "epoll-et"
"""The backend every module runs on by default (the other backends run IO_MODULES)."""
RUN_TIMEOUT = 600.0
SHARDS = {"test_tasks": 2}
"""Modules split over several xdist workers (test_tasks: ~900 tests)."""

KNOWN_DIFFERENCES: dict[tuple[str, str], dict[str, str]] = {
    ("test_events", "uring"): {
        "test_server_close": (
            "io_uring's poll requests pin the *file*, and the uring poller submits "
            "removals with its next poll: a listening socket closed right after "
            "remove_reader stays open until the loop runs again, so a connect made before "
            "that still succeeds (asyncio's server.close() closes it at once). The fix "
            "belongs in muxio/pollers/uring_poller.py: submit POLL_REMOVEs at once."),
    },
}
"""{(module, backend): {test method: why it fails there}}: each with its reason; a test
listed here that passes fails the run (remove it then)."""


def pairs() -> list[Any]:
    full = os.environ.get(ENV_FULL, "").strip().lower() == "full"
    backends = matrix_backends()
    chosen = []
    for backend in backends:
        every = full or backend == EVERY_MODULE_ON or EVERY_MODULE_ON not in backends
        for module in (ALL_MODULES if every else IO_MODULES):
            shards = SHARDS.get(module, 1)
            for shard in range(shards):
                label = f"{module}-{backend}" + (f"-{shard + 1}of{shards}" if shards > 1 else "")
                chosen.append(pytest.param(module, backend, f"{shard}/{shards}", id=label))
    return chosen


def run_suite(module: str, backend: str, tmp_path: Path, shard: str = "0/1",
              only: list[str] | None = None) -> dict[str, Any]:
    report = tmp_path / f"{module}-{backend}-{len(only or [])}.json"
    argv = [sys.executable, str(SUITE), "--module", module, "--backend", backend,
            "--shard", shard, "--json", str(report)]
    for test in only or []:
        argv += ["--only", test]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            check=False, cwd=SUITE.parents[2])
    if result.returncode != 0 or not report.exists():
        raise AssertionError(f"the suite run crashed ({result.returncode}):\n"
                             f"{result.stderr[-6000:]}")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def require_cpython_test_suite() -> None:
    """Skip (fail under CI=true) when this Python was installed without Lib/test."""
    try:
        import test.test_asyncio  # noqa: F401
    except ImportError:
        message = (f"CPython's test suite (test.test_asyncio) is not installed with "
                   f"{sys.executable}: pyenv and python.org builds ship it; Debian's python "
                   f"needs apt-get install libpython3.{sys.version_info[1]}-testsuite")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: a missing tool is a failure)", pytrace=False)
        pytest.skip(message)


def method_of(test_id: str) -> str:
    return test_id.rsplit(".", 1)[-1]


@pytest.mark.parametrize(("module", "on_backend", "shard"), pairs())
def test_cpython_asyncio_module(module: str, on_backend: str, shard: str,
                                tmp_path: Path) -> None:
    backend = on_backend  # (the name `backend` is the conftest's matrix fixture)
    require_cpython_test_suite()
    report = run_suite(module, backend, tmp_path, shard)
    counts = report["counts"]
    print(f"{module} ({shard}) on {backend}: {report['tests']} tests {counts}, "
          f"{report['ran_on_muxio']} created a muxio.aio loop, {report['seconds']} s")
    assert report["tests"] > 0
    assert report["ran_on_muxio"] > 0, "no test of this module used muxio.aio's loop"
    known = KNOWN_DIFFERENCES.get((module, backend), {})
    unexpected = {test: problem for test, problem in report["problems"].items()
                  if method_of(test) not in known}
    if unexpected:  # rerun alone: a shared host makes timing-based tests flake
        rerun = run_suite(module, backend, tmp_path, only=[test.split(".", 3)[-1]
                                                           for test in unexpected])
        still = {test: problem for test, problem in rerun["problems"].items()
                 if test in unexpected}
        for test in set(unexpected) - set(still):
            print(f"flaky (passed when rerun alone): {test}")
        assert not still, "\n\n".join(f"{test}: {problem['outcome']}\n{problem['detail']}"
                                      for test, problem in still.items())
    fixed = [test for test, outcome in report["outcomes"].items()
             if method_of(test) in known and outcome == "passed"]
    assert not fixed, f"known differences now pass; remove them from the list: {fixed}"
