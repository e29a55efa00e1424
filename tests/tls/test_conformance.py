"""The stream-transport conformance suite over TLS: on TCP (every backend), on KCP and on
the in-memory link (one backend each: the layer never touches the poller, and TLS over
KCP is the slow row). TLS refuses half-close, so the two tests built on write_eof are
replaced by what TLS promises instead."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from muxio.errors import TlsHalfCloseError
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.conformance import (
    Cleanup,
    StreamPair,
    StreamTransportConformance,
)
from muxio.testing.matrix import matrix_backends
from muxio.testing.memory import memory_pair
from muxio.transports import tls
from muxio.transports.registry import stream_transport
from muxio.transports.tls import TlsTransport
from tests.tls.harness import Pki

BACKENDS = matrix_backends()
CASES = [(backend, "tcp") for backend in BACKENDS] + [(BACKENDS[0], "kcp")]


class TlsConformance(StreamTransportConformance):
    pki: Pki
    transport = "memory"

    @pytest.fixture(autouse=True)
    def _use_pki(self, pki: Pki) -> None:
        self.pki = pki

    @pytest.fixture
    def pair_factory(self, tls_backend: str) -> Iterator[Callable[..., StreamPair]]:
        """As the suite's own, on `tls_backend` (this module's matrix, not the global
        one: see the module's docstring)."""
        with self.pairs_on_backend(tls_backend) as open_pair:
            yield open_pair

    def test_half_close(self, pair_factory: Any) -> None:
        """Replaced: write_eof is refused with a clear error, and the transport stays
        usable; close() is how a TLS handler ends its side."""
        pair: StreamPair = pair_factory(keep_open_on_eof=True)
        assert not pair.client_transport.can_write_eof()
        with pytest.raises(TlsHalfCloseError):
            pair.client_transport.write_eof()
        pair.client_transport.write(b"request")
        pair.run_until(lambda: bytes(pair.server.received) == b"request")
        pair.server_transport.write(b"response")
        pair.server_transport.close()
        # The server's close_notify is the client's EOF; its handler asked to stay open,
        # so the server waits for the client's close_notify (at most its close timeout).
        pair.run_until(lambda: "eof" in pair.client.events)
        assert not pair.server.lost
        pair.client_transport.close()
        pair.run_until(lambda: pair.client.lost and pair.server.lost)
        assert bytes(pair.client.received) == b"response"
        assert pair.client.events[-2:] == ["eof", "lost"]
        assert pair.server.events == ["made", "data", "lost"]
        assert pair.client.lost_with == [None] and pair.server.lost_with == [None]

    def test_flow_control_pauses_and_resumes_the_writer(self, pair_factory: Any) -> None:
        """As the suite's, but the buffer is checked when pause_writing comes: the suite
        checks it one loop iteration later, by when KCP's ACKs (the receiver paused
        reading, but segments already received are acknowledged) may have brought it
        back under the high mark without reaching the low one: a race, seen under load."""
        pair: StreamPair = pair_factory()
        transport = pair.client_transport
        transport.set_write_buffer_limits(high=64 * 1024)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        at_pause: list[int] = []
        pause = pair.client.pause_writing

        def record_pause() -> None:
            at_pause.append(transport.get_write_buffer_size())
            pause()

        pair.client.pause_writing = record_pause  # type: ignore[method-assign]
        pair.server_transport.pause_reading()
        assert not pair.server_transport.is_reading()
        written = 0
        while not pair.client.writing_paused:
            assert written < 256 * 1024 * 1024, "pause_writing never came"
            transport.write(b"f" * 65536)
            written += 65536
            pair.spin(1)
        assert at_pause[0] > 64 * 1024  # encrypted bytes not yet sent, over the mark
        pair.server_transport.resume_reading()
        pair.run_until(lambda: len(pair.server.received) >= written)
        pair.run_until(lambda: not pair.client.writing_paused)
        assert pair.client.pauses == pair.client.resumes >= 1
        assert bytes(pair.server.received) == b"f" * written

    def test_writing_more_and_eof_from_resume_writing(self, pair_factory: Any) -> None:
        """Replaced: more data and close() from resume_writing; close_notify goes out
        after that data, not before."""
        pair: StreamPair = pair_factory()
        client, transport = pair.client, pair.client_transport
        transport.set_write_buffer_limits(high=32 * 1024)
        pair.server_transport.pause_reading()
        written = 0
        while not client.writing_paused:
            assert written < 256 * 1024 * 1024, "pause_writing never came"
            transport.write(b"a" * 65536)
            written += 65536
            pair.spin(1)
        tail = b"z" * 3_000_000

        def finish() -> None:
            transport.write(tail)
            transport.close()

        client.resume_writing = finish  # type: ignore[method-assign]
        pair.server_transport.resume_reading()
        pair.run_until(lambda: "eof" in pair.server.events)
        assert bytes(pair.server.received) == b"a" * written + tail


class TestTlsOverStreamTransports(TlsConformance):
    """TLS over every registered stream transport (tcp, kcp) on every backend."""

    @pytest.fixture(params=CASES, ids=[f"{backend}-{name}" for backend, name in CASES])
    def tls_backend(self, request: pytest.FixtureRequest) -> str:
        backend, self.transport = request.param
        return str(backend)

    def make_pair(self, loop: Loop, client: Protocol,
                  server: Protocol) -> tuple[Transport, Transport, Cleanup]:
        spec = stream_transport(self.transport)
        listener = tls.serve(lambda: server, "127.0.0.1", 0, loop=loop,
                             context=self.pki.server_context(), over=spec.serve)
        connected = tls.connect(lambda: client, "localhost", listener.port, loop=loop,
                                context=self.pki.client_context(), over=spec.connect)
        client_transport, _ = loop.run_until_complete(connected, timeout=self.timeout)
        loop.run_until(lambda: bool(listener.connections), timeout=self.timeout)
        server_transport = next(iter(listener.connections))

        def cleanup() -> None:
            listener.abort_clients()
            client_transport.abort()
            listener.shutdown()

        return client_transport, server_transport, cleanup


class TestTlsOverMemory(TlsConformance):
    @pytest.fixture
    def tls_backend(self) -> str:
        return BACKENDS[0]

    def make_pair(self, loop: Loop, client: Protocol,
                  server: Protocol) -> tuple[Transport, Transport, Cleanup]:
        client_tls = TlsTransport(self.pki.client_context(), loop, server_side=False,
                                  app_protocol=client, server_hostname="localhost")
        server_tls = TlsTransport(self.pki.server_context(), loop, server_side=True,
                                  app_factory=lambda: server)
        memory_pair(loop, client_tls, server_tls)
        return client_tls, server_tls, lambda: None
