"""The stream-transport conformance suite (muxio.testing) with the server side on the thread
host: the client is muxio's TCP transport on the test's loop, the server a ThreadTransport
driven by its own reader thread."""

from __future__ import annotations

from typing import Any

from adapters.threads_host import ThreadServer
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.conformance import Cleanup, StreamTransportConformance
from muxio.transports import tcp


def _nothing() -> None:
    """Posted to the test loop only to wake it."""


class WakingProtocol(Protocol):
    """Forwards every callback to `inner`, then wakes the test's loop: the conformance
    suite waits with `loop.run_until(condition)`, and what the server thread records
    changes no fd the loop watches."""

    def __init__(self, inner: Protocol, loop: Loop) -> None:
        self.inner = inner
        self.loop = loop

    def _wake(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(_nothing)

    def connection_made(self, transport: Transport) -> None:
        self.inner.connection_made(transport)
        self._wake()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)
        self._wake()

    def eof_received(self) -> bool | None:
        keep_open = self.inner.eof_received()
        self._wake()
        return keep_open

    def pause_writing(self) -> None:
        self.inner.pause_writing()
        self._wake()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)
        self._wake()


class TestThreadHost(StreamTransportConformance):
    def make_pair(self, loop: Loop, client: Protocol,
                  server: Protocol) -> tuple[Transport, Transport, Cleanup]:
        errors: list[dict[str, Any]] = []
        host = ThreadServer("127.0.0.1", 0, on_error=errors.append)
        host.start(lambda: WakingProtocol(server, loop))
        connected = tcp.connect(lambda: client, "127.0.0.1", host.port, loop=loop)
        client_transport, _ = loop.run_until_complete(connected, timeout=self.timeout)
        loop.run_until(lambda: bool(host.connections), timeout=self.timeout)
        [server_transport] = host.connections

        def cleanup() -> None:
            client_transport.abort()
            host.stop()
            assert not errors, f"exceptions escaped server callbacks: {errors}"

        return client_transport, server_transport, cleanup
