"""muxio's pytest plugin: test your handler on every backend x transport.

Installed with muxio (entry point `pytest11`), so there is nothing to configure:

    import pytest

    @pytest.mark.muxio_matrix                       # every available backend x transport
    def test_my_handler(stream_pair):
        pair = stream_pair(server=MyProtocol)       # client: a RecordingProtocol
        pair.client_transport.write(b"ping\\n")
        pair.run_until(lambda: pair.client.received == b"pong\\n")

Fixtures
--------
- `backend`: a backend name. Unmarked tests get the configured one (MUXIO_BACKEND, a config
  file, auto); under `muxio_matrix`, each available backend in turn.
- `transport`: a stream transport name: 'tcp', or under `muxio_matrix` each registered one.
- `loop`: a `muxio.Loop` on `backend`, closed after the test.
- `stream_pair`: a `muxio.testing.pairs.StreamPairFactory` on `loop` and `transport`:
  `stream_pair(server=..., client=...)` returns a connected `StreamPair`; every pair is
  closed after the test.

Opt-in, so it changes no other test suite: nothing is parametrised unless a test (or its
class, or its module through `pytestmark`) carries the `muxio_matrix` marker, or the ini
option `muxio_matrix = true` asks for it everywhere (muxio's own suite does). The marker
can narrow: `@pytest.mark.muxio_matrix(backends=["epoll", "poll"], transports=["tcp"])`.
`MUXIO_TEST_BACKENDS=epoll,poll` narrows every run. Without the entry point (e.g.
PYTEST_DISABLE_PLUGIN_AUTOLOAD), load it with `-p muxio.testing.plugin`. The matrix comes
from the registries (`muxio.testing.matrix`), so a backend plug-in you install joins it.

To check your own transport, subclass `muxio.testing.conformance.StreamTransportConformance`
in a test module and mark the class `muxio_matrix`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from muxio.config import resolve_backend
from muxio.loop import Loop
from muxio.pollers.registry import default_registry
from muxio.testing.matrix import matrix_backends, stream_transports, unavailable_backends
from muxio.testing.pairs import StreamPairFactory

MARKER = "muxio_matrix"
INI_EVERYWHERE = "muxio_matrix"
_DRAIN_ITERATIONS = 5


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_EVERYWHERE, type="bool", default=False,
                  help="muxio: run every test that uses the backend or transport fixture on "
                       "every available backend x transport, marked muxio_matrix or not")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(backends=None, transports=None): run the test on every "
                   "available muxio backend x stream transport it uses (muxio's plugin); "
                   "the lists narrow it")


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not config.getini(INI_EVERYWHERE):
        return []
    lines = [f"muxio matrix: backends {', '.join(matrix_backends())}; "
             f"transports {', '.join(stream_transports())}"]
    lines += [f"backend {name} not tested here: {reason}"
              for name, reason in unavailable_backends().items()]
    return lines


def _narrowed(available: list[str], wanted: object, what: str) -> list[str]:
    """`available`, narrowed to the marker's list when it gives one."""
    if wanted is None:
        return available
    if not isinstance(wanted, (list, tuple, set, frozenset)):
        raise pytest.UsageError(f"{MARKER}({what}=...) takes a list of names, got {wanted!r}")
    names = {str(name) for name in wanted}
    chosen = [name for name in available if name in names]
    if not chosen:
        raise pytest.UsageError(f"{MARKER}({what}={sorted(names)}): none of them is available "
                                f"here; available: {', '.join(available)}")
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None and not metafunc.config.getini(INI_EVERYWHERE):
        return
    kwargs = marker.kwargs if marker is not None else {}
    # Session scope, like the fixtures they replace: a name is not a resource to reset,
    # and hypothesis's @given refuses function-scoped arguments.
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", _narrowed(matrix_backends(), kwargs.get("backends"),
                                                  "backends"), scope="session")
    if "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", _narrowed(stream_transports(),
                                                    kwargs.get("transports"), "transports"),
                             scope="session")


# `backend` and `transport` are names, not resources: session-scoped, so that tests which
# cannot use function-scoped fixtures (hypothesis's @given) may still ask for them.
@pytest.fixture(scope="session")
def backend() -> str:
    """The configured backend (MUXIO_BACKEND, muxio.toml, auto); each available one under
    the `muxio_matrix` marker."""
    return resolve_backend(registry=default_registry()).name


@pytest.fixture(scope="session")
def transport() -> str:
    """'tcp'; each registered stream transport under the `muxio_matrix` marker."""
    return "tcp"


@pytest.fixture
def loop(backend: str) -> Iterator[Loop]:
    """A fresh `muxio.Loop` on `backend`; pending callbacks run, then it is closed."""
    created = Loop(backend)
    try:
        yield created
    finally:
        if not created.is_closed():
            for _ in range(_DRAIN_ITERATIONS):
                created.run_once(0)
            created.close()


@pytest.fixture
def stream_pair(loop: Loop, transport: str) -> Iterator[StreamPairFactory]:
    """`stream_pair(server=MyProtocol, client=...)`: a connected `StreamPair` over
    `transport` on `loop`; every pair is closed after the test."""
    factory = StreamPairFactory(loop, transport)
    try:
        yield factory
    finally:
        factory.close()
