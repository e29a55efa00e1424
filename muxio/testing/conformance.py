"""A conformance suite every stream transport must pass (TCP, KCP, in-memory, yours).

Subclass it in a test module, name the subclass `Test...`, and implement `make_pair`:

    @pytest.mark.muxio_matrix            # on every available backend (muxio's pytest plugin)
    class TestMyTransport(StreamTransportConformance):
        def make_pair(self, loop, client, server):
            ...connect `client` and `server` protocols over your transport...
            return client_transport, server_transport, cleanup

Each test gets a fresh loop from the plugin's `loop` fixture: the configured backend, or
with the `muxio_matrix` marker each available backend in turn. Requires pytest.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.pairs import RecordingProtocol, StreamPair

Cleanup = Callable[[], None]
RecordingPair = StreamPair[RecordingProtocol, RecordingProtocol]


class StreamTransportConformance(ABC):
    """The contract of `muxio.protocols.Transport`, as tests."""

    timeout = 20.0

    @abstractmethod
    def make_pair(self, loop: Loop, client: Protocol,
                  server: Protocol) -> tuple[Transport, Transport, Cleanup]:
        """Connect `client` and `server` over the transport under test."""

    @pytest.fixture
    def pair_factory(self, loop: Loop) -> Iterator[Callable[..., RecordingPair]]:
        with self.pairs_on(loop) as open_pair:
            yield open_pair

    @contextmanager
    def pairs_on(self, loop: Loop) -> Iterator[Callable[..., RecordingPair]]:
        """`open_pair(keep_open_on_eof=...)` on `loop`; every pair made is cleaned up at
        the end. A subclass that runs on a loop of its own builds its pair_factory on it."""
        cleanups: list[Cleanup] = []

        def open_pair(*, keep_open_on_eof: bool = False) -> RecordingPair:
            client = RecordingProtocol(keep_open_on_eof=keep_open_on_eof)
            server = RecordingProtocol(keep_open_on_eof=keep_open_on_eof)
            client_transport, server_transport, cleanup = self.make_pair(loop, client, server)
            cleanups.append(cleanup)
            pair = StreamPair(loop, client, server, client_transport, server_transport,
                              self.timeout)
            pair.run_until(lambda: bool(client.events and server.events))
            return pair

        try:
            yield open_pair
        finally:
            for cleanup in cleanups:
                cleanup()

    @contextmanager
    def pairs_on_backend(self, backend: str) -> Iterator[Callable[..., RecordingPair]]:
        """`pairs_on` a new loop of `backend`, drained and closed at the end."""
        loop = Loop(backend)
        try:
            with self.pairs_on(loop) as open_pair:
                yield open_pair
        finally:
            for _ in range(5):
                loop.run_once(0)  # let closed transports release their sockets
            loop.close()

    # -- the tests -----------------------------------------------------------------------

    def test_bytes_arrive_in_order_both_ways(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory()
        chunks = [f"{i:05d};".encode() for i in range(2000)]
        for chunk in chunks:
            pair.client_transport.write(chunk)
        expected = b"".join(chunks)
        pair.run_until(lambda: len(pair.server.received) >= len(expected))
        assert bytes(pair.server.received) == expected
        pair.server_transport.writelines([b"back", b"-", b"again"])
        pair.run_until(lambda: len(pair.client.received) >= 10)
        assert bytes(pair.client.received) == b"back-again"

    def test_large_write_arrives_intact(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory()
        payload = os.urandom(4 * 1024 * 1024)
        pair.client_transport.write(payload)
        pair.run_until(lambda: len(pair.server.received) >= len(payload))
        assert bytes(pair.server.received) == payload
        pair.run_until(lambda: pair.client_transport.get_write_buffer_size() == 0)

    def test_flow_control_pauses_and_resumes_the_writer(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory()
        pair.client_transport.set_write_buffer_limits(high=64 * 1024)
        assert pair.client_transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        pair.server_transport.pause_reading()
        assert not pair.server_transport.is_reading()
        chunk = b"f" * 65536
        written = 0
        while not pair.client.writing_paused:
            assert written < 256 * 1024 * 1024, "pause_writing never came"
            pair.client_transport.write(chunk)
            written += len(chunk)
            pair.spin(1)
        # At the moment of the pause (an iteration later, ACKs may have drained it).
        assert pair.client.buffered_at_pause[0] > 64 * 1024
        # Paused: the writer's buffer is bounded by what it wrote past the high mark.
        pair.server_transport.resume_reading()
        pair.run_until(lambda: len(pair.server.received) >= written)
        pair.run_until(lambda: not pair.client.writing_paused)
        # Receive windows/buffers may absorb a first burst, so pauses can repeat; they pair.
        assert pair.client.pauses == pair.client.resumes >= 1
        assert bytes(pair.server.received) == b"f" * written

    def test_writing_more_and_eof_from_resume_writing(self, pair_factory: Any) -> None:
        """A protocol that answers resume_writing with more data and write_eof: the EOF
        must go out after that data, not before (a regression seen under load)."""
        pair: RecordingPair = pair_factory()
        client, transport = pair.client, pair.client_transport
        transport.set_write_buffer_limits(high=32 * 1024)
        pair.server_transport.pause_reading()
        written = 0
        while not client.writing_paused:
            assert written < 256 * 1024 * 1024, "pause_writing never came"
            transport.write(b"a" * 65536)
            written += 65536
            pair.spin(1)
        tail = b"z" * 8_000_000  # more than the kernel takes at once

        def finish() -> None:
            transport.write(tail)
            transport.write_eof()

        client.resume_writing = finish  # type: ignore[method-assign]
        pair.server_transport.resume_reading()
        pair.run_until(lambda: "eof" in pair.server.events)
        assert bytes(pair.server.received) == b"a" * written + tail

    def test_pause_reading_stops_data_received(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory()
        pair.server_transport.pause_reading()
        pair.client_transport.write(b"held back")
        pair.spin()
        assert pair.server.received == b""
        pair.server_transport.resume_reading()
        assert pair.server_transport.is_reading()
        pair.run_until(lambda: pair.server.received == b"held back")

    def test_half_close(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory(keep_open_on_eof=True)
        assert pair.client_transport.can_write_eof()
        pair.client_transport.write(b"request")
        pair.client_transport.write_eof()
        with pytest.raises(RuntimeError):
            pair.client_transport.write(b"too late")
        pair.run_until(lambda: "eof" in pair.server.events)
        assert bytes(pair.server.received) == b"request"
        pair.server_transport.write(b"response after the peer's EOF")
        pair.server_transport.close()
        pair.run_until(lambda: pair.client.lost and pair.server.lost)
        assert bytes(pair.client.received) == b"response after the peer's EOF"
        assert pair.client.events[-2:] == ["eof", "lost"]
        assert pair.client.lost_with == [None]
        assert pair.server.lost_with == [None]

    def test_close_sends_buffered_data_first(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory()
        payload = os.urandom(2 * 1024 * 1024)
        pair.client_transport.write(payload)
        pair.client_transport.close()
        assert pair.client_transport.is_closing()
        pair.client_transport.write(b"ignored after close")
        pair.run_until(lambda: pair.client.lost and pair.server.lost)
        assert bytes(pair.server.received) == payload
        assert pair.server.events == ["made", "data", "eof", "lost"]
        assert pair.client.lost_with == [None]

    def test_abort_closes_at_once(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory()
        pair.client_transport.abort()
        pair.client_transport.abort()
        pair.run_until(lambda: pair.client.lost and pair.server.lost)
        assert pair.client.lost_with == [None]
        assert pair.client.events.count("lost") == 1
        assert pair.server.events.count("lost") == 1
        # The peer is reset, on every transport (TCP: RST; KCP: its reset datagram).
        assert isinstance(pair.server.lost_with[0], ConnectionResetError)

    def test_connection_lost_is_last_and_once(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory()
        pair.client_transport.write(b"x" * 100_000)
        pair.server_transport.close()
        pair.run_until(lambda: pair.client.lost and pair.server.lost)
        pair.spin()
        for protocol in (pair.client, pair.server):
            assert protocol.events[0] == "made"
            assert protocol.events[-1] == "lost"
            assert protocol.events.count("lost") == 1

    def test_extra_info(self, pair_factory: Any) -> None:
        pair: RecordingPair = pair_factory()
        for transport in (pair.client_transport, pair.server_transport):
            assert transport.get_extra_info("peername") is not None
            assert transport.get_extra_info("sockname") is not None
            assert isinstance(transport.get_extra_info("transport"), str)
            assert transport.get_extra_info("no such key", "dflt") == "dflt"
        assert pair.client_transport.get_extra_info("peername") != (
            pair.server_transport.get_extra_info("peername"))


__all__ = ["Cleanup", "RecordingProtocol", "StreamPair", "StreamTransportConformance"]
