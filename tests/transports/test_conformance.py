"""The stream-transport conformance suite (muxio.testing) on TCP and in-memory pairs."""

from __future__ import annotations

import pytest

from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.conformance import Cleanup, StreamTransportConformance
from muxio.testing.memory import memory_pair
from muxio.transports.registry import stream_transport


class TestStreamTransports(StreamTransportConformance):
    """Every registered stream transport (tcp, kcp...) on every backend."""

    transport: str

    @pytest.fixture(autouse=True)
    def _use_transport(self, transport: str) -> None:
        """`transport` (like `backend`) is parametrised by tests/conftest.py's matrix."""
        self.transport = transport

    def make_pair(self, loop: Loop, client: Protocol,
                  server: Protocol) -> tuple[Transport, Transport, Cleanup]:
        spec = stream_transport(self.transport)
        server_made: list[Protocol] = []

        def server_factory() -> Protocol:
            server_made.append(server)
            return server

        listener = spec.serve(server_factory, "127.0.0.1", 0, loop=loop)
        connected = spec.connect(lambda: client, "127.0.0.1", listener.port, loop=loop)
        client_transport, _ = loop.run_until_complete(connected, timeout=self.timeout)
        loop.run_until(lambda: bool(server_made) and bool(listener.connections),
                       timeout=self.timeout)
        server_transport = next(iter(listener.connections))

        def cleanup() -> None:
            listener.close()
            listener.abort_clients()
            client_transport.abort()

        return client_transport, server_transport, cleanup


class TestMemoryTransport(StreamTransportConformance):
    def make_pair(self, loop: Loop, client: Protocol,
                  server: Protocol) -> tuple[Transport, Transport, Cleanup]:
        client_transport, server_transport = memory_pair(loop, client, server)
        return client_transport, server_transport, lambda: None
