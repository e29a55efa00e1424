"""TLS servers and clients over any stream transport's `serve` / `connect`.

    server = tls.serve(factory, "127.0.0.1", 8443, loop=loop, context=server_ctx)
    server = tls.serve(factory, "127.0.0.1", 8443, loop=loop, context=server_ctx,
                       over=kcp.serve)                      # TLS over KCP
    future = tls.connect(factory, "localhost", 8443, loop=loop, context=client_ctx)
    transport, protocol = loop.run_until_complete(future)   # after the handshake

`over` is the inner transport's `serve` or `connect` (TCP by default); its own options pass
through (`backlog=`, `reuse_port=`, `profile=`...). The server's `connections` are the TLS
transports whose handshake is done; sessions still in their handshake are counted apart,
and failed handshakes are logged at INFO (at most `FAILURES_LOGGED_PER_WINDOW` lines per
`FAILURE_LOG_WINDOW` seconds, then a count, so a flood of bad clients cannot flood the
log) and counted in `handshake_failures`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from muxio.errors import TlsHandshakeError
from muxio.futures import Future
from muxio.loop import Loop
from muxio.protocols import Protocol, ProtocolFactory
from muxio.transports import tcp
from muxio.transports.tls.layer import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    HANDSHAKING,
    TlsTransport,
)

log = logging.getLogger("muxio.tls")

FAILURES_LOGGED_PER_WINDOW = 20
FAILURE_LOG_WINDOW = 10.0


class TlsServer:
    """A stream server (TCP, KCP...) whose every connection is a TLS session."""

    def __init__(self, loop: Loop, protocol_factory: ProtocolFactory, context: ssl.SSLContext,
                 *, handshake_timeout: float, close_timeout: float) -> None:
        self._loop = loop
        self._protocol_factory = protocol_factory
        self.context = context
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout
        self.inner: Any = None
        """The inner transport's server (TcpServer, KcpServer...)."""
        self.sessions: set[TlsTransport] = set()
        """Every TLS session, in its handshake or after it."""
        self.connections: set[TlsTransport] = set()
        """Sessions whose handshake is done (the handler has them)."""
        self.handshakes = 0
        self.handshake_failures = 0
        self._window_end = 0.0
        self._logged_in_window = 0
        self._suppressed = 0

    def _new_session(self) -> TlsTransport:
        session = TlsTransport(self.context, self._loop, server_side=True,
                               app_factory=self._protocol_factory,
                               handshake_timeout=self._handshake_timeout,
                               close_timeout=self._close_timeout,
                               on_handshake=self._handshake_finished, on_lost=self._lost)
        self.sessions.add(session)
        return session

    def _handshake_finished(self, session: TlsTransport, error: TlsHandshakeError | None,
                            ) -> None:
        if error is None:
            self.handshakes += 1
            self.connections.add(session)
            return
        if session.closed_locally:
            log.debug("%s", error)
            return
        self.handshake_failures += 1
        self._log_failure(error)

    def _log_failure(self, error: TlsHandshakeError) -> None:
        now = self._loop.time()
        if now >= self._window_end:
            if self._suppressed:
                log.info("%d more TLS handshake failures in the last %g s were not logged",
                         self._suppressed, FAILURE_LOG_WINDOW)
            self._window_end = now + FAILURE_LOG_WINDOW
            self._logged_in_window = 0
            self._suppressed = 0
        if self._logged_in_window < FAILURES_LOGGED_PER_WINDOW:
            self._logged_in_window += 1
            log.info("%s", error)
        else:
            self._suppressed += 1

    def _lost(self, session: TlsTransport) -> None:
        self.sessions.discard(session)
        self.connections.discard(session)

    @property
    def handshaking(self) -> int:
        """Sessions still in their handshake."""
        return sum(1 for session in self.sessions if session.state is HANDSHAKING)

    @property
    def port(self) -> int:
        return int(self.inner.port)

    @property
    def sockets(self) -> list[Any]:
        return list(self.inner.sockets)

    def close(self) -> None:
        """Stop accepting; established sessions go on (see close_clients)."""
        self.inner.close()

    def close_clients(self) -> None:
        """close_notify to every session (handshakes in progress are dropped)."""
        for session in list(self.sessions):
            session.close()

    def abort_clients(self) -> None:
        for session in list(self.sessions):
            session.abort()

    def shutdown(self) -> None:
        """What the inner server's `shutdown` does (KCP: drop every session and close the
        UDP sockets), or its `close` (TCP: stop listening; sessions that close_clients
        closed still finish their close_notify exchange)."""
        getattr(self.inner, "shutdown", self.inner.close)()

    def is_serving(self) -> bool:
        return bool(self.inner.is_serving())

    def __repr__(self) -> str:
        return (f"<TlsServer over {self.inner!r}: {len(self.connections)} connections, "
                f"{self.handshake_failures} failed handshakes>")


def serve(protocol_factory: ProtocolFactory, host: str | None = "127.0.0.1", port: int = 0,
          *, loop: Loop, context: ssl.SSLContext, over: Callable[..., Any] = tcp.serve,
          handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
          close_timeout: float = DEFAULT_CLOSE_TIMEOUT, **options: Any) -> TlsServer:
    """Serve TLS on `over` (tcp.serve by default, or kcp.serve...); each connection's
    handler is made by `protocol_factory` once its handshake is done."""
    server = TlsServer(loop, protocol_factory, context, handshake_timeout=handshake_timeout,
                       close_timeout=close_timeout)
    server.inner = over(server._new_session, host, port, loop=loop, **options)
    return server


def connect(protocol_factory: ProtocolFactory, host: str, port: int, *, loop: Loop,
            context: ssl.SSLContext, over: Callable[..., Any] = tcp.connect,
            server_hostname: str | None = None,
            handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
            close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
            **options: Any) -> Future[tuple[TlsTransport, Protocol]]:
    """Connect over `over` (tcp.connect by default), then run the handshake. The future
    gives (transport, protocol) once the handshake is done, or TlsHandshakeError (or the
    inner connect's error, e.g. ConnectionRefusedError). `server_hostname` (default:
    `host`) is sent as SNI and checked against the certificate; cancelling the future
    aborts the connection."""
    future: Future[tuple[TlsTransport, Protocol]] = Future(loop)
    sessions: list[TlsTransport] = []

    def on_handshake(session: TlsTransport, error: TlsHandshakeError | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result((session, session.get_protocol()))

    def new_session() -> TlsTransport:
        session = TlsTransport(context, loop, server_side=False,
                               app_protocol=protocol_factory(),
                               server_hostname=server_hostname or host,
                               handshake_timeout=handshake_timeout,
                               close_timeout=close_timeout, on_handshake=on_handshake)
        sessions.append(session)
        return session

    def inner_done(inner: Future[Any]) -> None:
        exc = inner.exception()
        if exc is not None and not future.done():
            future.set_exception(exc)

    def cancelled(done: Future[tuple[TlsTransport, Protocol]]) -> None:
        if done.cancelled():
            for session in sessions:
                session.abort()

    try:
        inner_future = over(new_session, host, port, loop=loop, **options)
    except Exception as exc:
        future.set_exception(exc)
        return future
    inner_future.add_done_callback(inner_done)
    future.add_done_callback(cancelled)
    return future
