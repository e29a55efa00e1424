"""muxio's pytest plugin as a user's test suite meets it: opt-in parametrisation, the
fixtures, marker narrowing, the conformance suite by subclassing, and no effect on suites
that do not ask for it. Each case is a small test file run by pytest in a subprocess."""

from __future__ import annotations

import re

import pytest

from muxio.testing.matrix import matrix_backends, stream_transports

pytest_plugins = ["pytester"]

ECHO_HANDLER = '''
import muxio

class Echo(muxio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)
'''


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=source)
    # No xdist, no ini of ours: the user's own run, with only what pip installed.
    return pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider", "-v",
                                         *args)


def ids(result: pytest.RunResult) -> list[str]:
    return re.findall(r"::(\S+) PASSED", result.stdout.str())


def test_marked_test_runs_on_every_backend_and_transport(pytester: pytest.Pytester) -> None:
    result = run(pytester, ECHO_HANDLER + '''
import pytest

@pytest.mark.muxio_matrix
def test_echo(stream_pair, backend, transport):
    pair = stream_pair(server=Echo)
    pair.client_transport.write(b"hello")
    pair.run_until(lambda: pair.client.received == b"hello")
    assert pair.loop.backend == backend
    assert pair.client_transport.get_extra_info("transport") == transport
''')
    result.assert_outcomes(passed=len(matrix_backends()) * len(stream_transports()))
    assert set(ids(result)) == {f"test_echo[{backend}-{transport}]"
                                for backend in matrix_backends()
                                for transport in stream_transports()}


def test_unmarked_tests_are_left_alone(pytester: pytest.Pytester) -> None:
    """No marker: one run on the configured backend; a suite's own `backend` fixture
    wins over the plugin's."""
    pytester.makeconftest('''
import pytest

@pytest.fixture
def transport():
    return "carrier pigeon"
''')
    result = run(pytester, '''
def test_plain(backend, loop, transport):
    assert loop.backend == backend
    assert transport == "carrier pigeon"
''', "--setup-only")
    result.assert_outcomes()
    assert "test_user.py::test_plain " in result.stdout.str()
    assert "[" not in result.stdout.str().split("test_user.py::test_plain")[1].split()[0]


def test_module_marker_narrowed_to_one_backend_and_transport(
        pytester: pytest.Pytester) -> None:
    backend = matrix_backends()[-1]
    result = run(pytester, f'''
import pytest

pytestmark = pytest.mark.muxio_matrix(backends=[{backend!r}], transports=["kcp"])

def test_one(loop, transport):
    assert (loop.backend, transport) == ({backend!r}, "kcp")
''')
    result.assert_outcomes(passed=1)
    assert ids(result) == [f"test_one[{backend}-kcp]"]


def test_a_marker_naming_nothing_available_is_a_usage_error(
        pytester: pytest.Pytester) -> None:
    result = run(pytester, '''
import pytest

@pytest.mark.muxio_matrix(backends=["no-such-poller"])
def test_nothing(backend):
    pass
''')
    assert result.ret != 0
    assert "none of them is available here" in result.stdout.str() + result.stderr.str()


def test_conformance_suite_by_subclassing(pytester: pytest.Pytester) -> None:
    """A user's transport (here: muxio's in-memory one) against the whole contract, on
    two backends."""
    result = run(pytester, '''
import pytest
from muxio.testing.conformance import StreamTransportConformance
from muxio.testing.memory import memory_pair

@pytest.mark.muxio_matrix(backends=["poll", "select"])
class TestMyTransport(StreamTransportConformance):
    def make_pair(self, loop, client, server):
        client_transport, server_transport = memory_pair(loop, client, server)
        return client_transport, server_transport, lambda: None
''')
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 20, outcomes
    assert "[poll]" in result.stdout.str() and "[select]" in result.stdout.str()


def test_the_plugin_is_what_provides_the_fixtures(pytester: pytest.Pytester) -> None:
    source = '''
def test_needs(loop):
    assert not loop.is_closed()
'''
    disabled = run(pytester, source, "-p", "no:muxio.testing.plugin")
    assert "fixture 'loop' not found" in disabled.stdout.str()
    explicit = run(pytester, source, "-p", "muxio.testing.plugin")
    explicit.assert_outcomes(passed=1)


def test_ini_option_turns_the_matrix_on_everywhere(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmuxio_matrix = true\n")
    result = run(pytester, '''
def test_every(backend):
    pass
''')
    result.assert_outcomes(passed=len(matrix_backends()))
    assert "muxio matrix: backends" in result.stdout.str()
