"""Connected protocol pairs over a real transport, for testing handlers and transports.

    pairs = StreamPairFactory(loop, "kcp")
    pair = pairs(server=MyProtocol)              # client: a RecordingProtocol
    pair.client_transport.write(b"GET key\\n")
    pair.run_until(lambda: pair.client.received.endswith(b"\\n"))
    pairs.close()

A pair is served and connected through the stream transport registry on 127.0.0.1 (port
0), so a transport added there is tested by the same code. `RecordingProtocol` records
every callback, in order, for assertions. The pytest plugin (`muxio.testing.plugin`) hands
out a factory as the `stream_pair` fixture and closes it after the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports.registry import stream_transport

C = TypeVar("C", bound=Protocol)
S = TypeVar("S", bound=Protocol)

DEFAULT_TIMEOUT = 20.0
"""Seconds a pair's `run_until` waits for its condition (a deadline, never a duration)."""


class RecordingProtocol(Protocol):
    """Records every callback in order; optionally keeps the connection open on EOF."""

    def __init__(self, *, keep_open_on_eof: bool = False) -> None:
        self.keep_open_on_eof = keep_open_on_eof
        self.transport: Transport | None = None
        self.events: list[str] = []
        """'made', 'data' (once per run of data), 'eof', 'pause', 'resume', 'lost'."""
        self.received = bytearray()
        """Every byte received, in order."""
        self.writing_paused = False
        self.pauses = 0
        self.resumes = 0
        self.lost_with: list[Exception | None] = []
        self.buffered_at_pause: list[int] = []
        """The transport's write buffer size at each pause_writing."""

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        assert "lost" not in self.events, "data_received after connection_lost"
        self.received += data
        if not self.events or self.events[-1] != "data":
            self.events.append("data")

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open_on_eof

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.pauses += 1
        self.events.append("pause")
        if self.transport is not None:
            self.buffered_at_pause.append(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.resumes += 1
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost_with.append(exc)

    @property
    def lost(self) -> bool:
        """Whether connection_lost was called."""
        return "lost" in self.events


class StreamPair(Generic[C, S]):
    """Two connected protocols on one loop, plus the helpers tests need."""

    def __init__(self, loop: Loop, client: C, server: S,  # noqa: PLR0917
                 client_transport: Transport, server_transport: Transport,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.loop = loop
        self.client = client
        self.server = server
        self.client_transport = client_transport
        self.server_transport = server_transport
        self.timeout = timeout

    def run_until(self, condition: Callable[[], bool]) -> None:
        """Run the loop until `condition()` holds (LoopTimeoutError past the deadline)."""
        self.loop.run_until(condition, timeout=self.timeout)

    def spin(self, iterations: int = 20) -> None:
        """Let a few loop iterations pass (to show that something does NOT happen)."""
        for _ in range(iterations):
            self.loop.run_once(0.001)


class StreamPairFactory:
    """Makes connected pairs over one registered stream transport; `close()` ends them."""

    def __init__(self, loop: Loop, transport: str = "tcp", *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.loop = loop
        self.transport = stream_transport(transport).name
        self.timeout = timeout
        self._cleanups: list[Callable[[], None]] = []

    @overload
    def __call__(self) -> StreamPair[RecordingProtocol, RecordingProtocol]: ...

    @overload
    def __call__(self, server: Callable[[], S]) -> StreamPair[RecordingProtocol, S]: ...

    @overload
    def __call__(self, server: Callable[[], S], client: Callable[[], C]) -> StreamPair[C, S]: ...

    def __call__(self, server: Callable[[], Any] = RecordingProtocol,
                 client: Callable[[], Any] = RecordingProtocol) -> StreamPair[Any, Any]:
        """Serve one `server()` protocol, connect one `client()` to it; both have had
        `connection_made` when this returns."""
        spec = stream_transport(self.transport)
        made: list[Protocol] = []

        def serve_one() -> Protocol:
            protocol: Protocol = server()
            made.append(protocol)
            return protocol

        listener = spec.serve(serve_one, "127.0.0.1", 0, loop=self.loop)
        self._cleanups += [listener.close, listener.abort_clients]
        client_protocol: Protocol = client()
        connecting = spec.connect(lambda: client_protocol, "127.0.0.1", listener.port,
                                  loop=self.loop)
        client_transport, _ = self.loop.run_until_complete(connecting, timeout=self.timeout)
        self._cleanups.append(client_transport.abort)
        self.loop.run_until(lambda: bool(made) and bool(listener.connections),
                            timeout=self.timeout)
        server_transport = next(iter(listener.connections))
        return StreamPair(self.loop, client_protocol, made[0], client_transport,
                          server_transport, self.timeout)

    def close(self) -> None:
        """Abort every pair's connections and stop their listeners."""
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in cleanups:
            cleanup()
        if not self.loop.is_closed() and not self.loop.is_running():
            for _ in range(5):
                self.loop.run_once(0)
