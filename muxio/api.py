"""The top-level API (`import muxio`): serve, connect, open a UDP endpoint, list backends.

Everything here is a thin front over the floors below, so a program needs no deep import:

    import muxio

    class Echo(muxio.Protocol):
        def connection_made(self, transport): self.transport = transport
        def data_received(self, data): self.transport.write(data)

    server = muxio.serve(Echo, "localhost", 7007, backend="poll")   # or transport="kcp"
    server.serve_forever()                                           # until Ctrl-C

Theory of operation
-------------------
`serve` and `connect` look the transport up in the stream transport registry
(`muxio.transports.registry`), check the keyword options against what that transport's
own `serve`/`connect` take, and call it: there is no per-transport branch here, so a
transport added to the registry is served by the same call. With `tls=context`, the TLS
layer (`muxio.transports.tls`) runs over whichever transport that is. A server started without a
`loop` gets a new `Loop(backend)` of its own (the backend follows the usual precedence:
this argument, then `MUXIO_BACKEND`, a config file, `auto`) and closes it when it closes.
A client always runs on a loop the caller owns: a connection is a part of a program, not
the program.
"""

from __future__ import annotations

import signal
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

from muxio.errors import ConfigError
from muxio.futures import Future
from muxio.loop import Loop
from muxio.pollers.registry import Registry, default_registry
from muxio.protocols import DatagramProtocol, DatagramTransport, Protocol, Transport
from muxio.transports import tls as tls_layer
from muxio.transports import udp
from muxio.transports.registry import StreamTransportSpec, stream_transport

P = TypeVar("P", bound=Protocol)
D = TypeVar("D", bound=DatagramProtocol)

TLS_SERVE_OPTIONS = frozenset({"handshake_timeout", "close_timeout"})
"""Options of the TLS layer itself when `serve(..., tls=context)`; the rest go to the
transport under it."""
TLS_CONNECT_OPTIONS = frozenset({"server_hostname", "handshake_timeout", "close_timeout"})
_FLUSH_ITERATIONS = 3
"""Loop iterations run after closing, so that close callbacks (connection_lost, the last
sends) happen before the loop goes away."""


class Server:
    """A listening stream server, as `muxio.serve` returns it.

    `port`, `addresses` and `connections` describe it; `serve_forever()` runs its loop
    until SIGINT/SIGTERM (or `loop.stop()`), then closes it; `close()` stops listening and
    closes every connection gracefully (buffered data is still sent). As a context manager
    it closes on exit. A server that made its own loop closes that loop too.
    """

    def __init__(self, listener: Any, loop: Loop, transport: str, *, owns_loop: bool) -> None:
        self.listener = listener
        """The transport's own server object (e.g. `muxio.transports.tcp.TcpServer`)."""
        self.loop = loop
        """The loop the server runs on."""
        self.transport = transport
        """The stream transport's name ('tcp', 'kcp'...; 'tls+tcp' with TLS over it)."""
        self._owns_loop = owns_loop
        self._closed = False
        self._flushed = False

    @property
    def port(self) -> int:
        """The port listened on (the kernel's choice when serve was given port 0)."""
        return int(self.listener.port)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket, e.g. 127.0.0.1 and ::1 for 'localhost'."""
        return [(str(sock.getsockname()[0]), int(sock.getsockname()[1]))
                for sock in self.listener.sockets]

    @property
    def connections(self) -> set[Transport]:
        """The open connections, one transport each."""
        return set(self.listener.connections)

    def serve_forever(self) -> None:
        """Run the loop until SIGINT or SIGTERM (main thread only) or `loop.stop()`, then
        close the server."""
        try:
            with _stop_on_signals(self.loop):
                self.loop.run_forever()
        finally:
            self.close()

    def close(self) -> None:
        """Stop listening and close every connection; idempotent. Called from a callback
        while the loop runs, it also stops the loop (`serve_forever` then returns)."""
        loop = self.loop
        if not self._closed and not loop.is_closed():
            self._closed = True
            listener = self.listener
            listener.close()  # every transport's server: stop accepting, idempotent
            listener.close_clients()
        self._closed = True
        if loop.is_running():
            if self._owns_loop:
                loop.stop()  # the loop is closed when serve_forever calls close again
            return
        if not loop.is_closed() and not self._flushed:
            self._flushed = True
            for _ in range(_FLUSH_ITERATIONS):
                loop.run_once(0)
            if self._owns_loop:
                loop.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.listener.connections)} connections"
        return f"<muxio.Server {self.transport} {self.addresses} on {self.loop.backend}, {state}>"


@contextmanager
def _stop_on_signals(loop: Loop) -> Iterator[None]:
    """SIGINT/SIGTERM stop the loop while the block runs (signals are the main thread's)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, loop.stop)
    try:
        yield
    finally:
        if not loop.is_closed():
            for signum in signals:
                loop.remove_signal_handler(signum)


def _split_tls_options(spec: StreamTransportSpec, what: str, options: dict[str, Any],
                       tls: ssl.SSLContext | None, layer: frozenset[str]) -> dict[str, Any]:
    """Take the TLS layer's own options out of `options` (only with `tls`), check the rest
    against the transport under it; returns the layer's."""
    layer_options = {name: options.pop(name) for name in layer & set(options)} if tls else {}
    spec.check_options(what, options)
    return layer_options


def serve(protocol_factory: Callable[[], Protocol], host: str | None = "localhost",
          port: int = 0, *, transport: str = "tcp", backend: str | None = None,
          loop: Loop | None = None, tls: ssl.SSLContext | None = None,
          **options: Any) -> Server:
    """Listen on `host:port` and serve each connection with a new `protocol_factory()`.

    `transport` names a registered stream transport ('tcp', 'kcp' over UDP); `options`
    are that transport's own (TCP: `backlog`, `reuse_port`; KCP: `idle_timeout`,
    `max_sessions`...). `tls`, a server `ssl.SSLContext` (`muxio.transports.tls.
    server_context`), serves TLS over that transport, whatever it is; the layer's own
    options are `handshake_timeout` and `close_timeout`. `host` 'localhost' listens on
    127.0.0.1 and ::1, None on every interface; port 0 lets the kernel choose (see
    `Server.port`). Without `loop`, the server runs on a new loop of the given `backend`
    (None: MUXIO_BACKEND, a config file or auto) that it closes when it closes; with
    `loop`, the loop already decided.
    """
    spec = stream_transport(transport)
    layer_options = _split_tls_options(spec, "serve", options, tls, TLS_SERVE_OPTIONS)
    if loop is not None and backend is not None:
        raise ConfigError(f"serve() got both loop= and backend={backend!r}: the loop already "
                          f"runs on {loop.backend!r}; pass one of them")
    owns_loop = loop is None
    running_on = Loop(backend) if loop is None else loop
    try:
        if tls is None:
            listener = spec.serve(protocol_factory, host, port, loop=running_on, **options)
        else:
            listener = tls_layer.serve(protocol_factory, host, port, loop=running_on,
                                       context=tls, over=spec.serve, **layer_options,
                                       **options)
    except BaseException:
        if owns_loop:
            running_on.close()
        raise
    name = spec.name if tls is None else f"tls+{spec.name}"
    return Server(listener, running_on, name, owns_loop=owns_loop)


def connect(protocol_factory: Callable[[], P], host: str, port: int, *,
            transport: str = "tcp", loop: Loop, tls: ssl.SSLContext | None = None,
            **options: Any) -> Future[tuple[Transport, P]]:
    """Open a connection over `transport` ('tcp', 'kcp'...) to `host:port` on `loop`.

    The Future gives (transport, protocol) once connected, or the error (e.g.
    ConnectionRefusedError); run the loop to get there:
    `loop.run_until_complete(muxio.connect(...), timeout=5)`. `options` are the
    transport's own (TCP: `timeout`; KCP: `conv`, `profile`, `idle_timeout`...). `tls`, a
    client `ssl.SSLContext` (`muxio.transports.tls.client_context`), runs TLS over the
    transport, the future completing after the handshake; the layer's own options are
    `server_hostname` (default: `host`), `handshake_timeout` and `close_timeout`. The loop
    decides the backend: `muxio.Loop(backend="poll")`.
    """
    spec = stream_transport(transport)
    layer_options = _split_tls_options(spec, "connect", options, tls, TLS_CONNECT_OPTIONS)
    if tls is None:
        connecting = spec.connect(protocol_factory, host, port, loop=loop, **options)
    else:
        connecting = tls_layer.connect(protocol_factory, host, port, loop=loop, context=tls,
                                       over=spec.connect, **layer_options, **options)
    return cast(Future[tuple[Transport, P]], connecting)


def create_endpoint(protocol_factory: Callable[[], D],
                    local_addr: tuple[str, int] | None = None,
                    remote_addr: tuple[str, int] | None = None, *, loop: Loop,
                    **options: Any) -> tuple[DatagramTransport, D]:
    """Open one UDP endpoint on `loop`; returns (transport, protocol) at once.

    `local_addr` binds (default: an ephemeral port), `remote_addr` connects (then
    `sendto(data)` needs no address). Addresses are IP literals: ('127.0.0.1', 0),
    ('::1', 5353). `options`: `family`, `rcvbuf`, `sndbuf`, `reuse_port`.
    """
    transport_, protocol = udp.create_endpoint(protocol_factory, local_addr, remote_addr,
                                               loop=loop, **options)
    return transport_, cast(D, protocol)


@dataclass(frozen=True)
class BackendInfo:
    """One row of the backend table, as data (what `muxio backends --json` prints)."""

    name: str
    """What `Loop(backend=...)`, `--backend` and MUXIO_BACKEND accept."""
    available: bool
    """Whether it can run here."""
    reason: str
    """Why it cannot run here ('' when available)."""
    edge_triggered: bool
    """Readiness is reported once per change (readers must drain to EAGAIN)."""
    constant_time: bool
    """One poll costs the same however many idle fds are registered."""
    fd_limit: int | None
    """Highest fd number + 1 it can watch (select: 1024), None for no limit."""
    source: str
    """'built-in', or the plugin distribution and entry point that added it."""
    description: str
    """One line about it."""
    in_matrix: bool
    """Whether the test and benchmark matrix runs on it (aliases are left out)."""


def backends(registry: Registry | None = None) -> list[BackendInfo]:
    """Every poller backend known here, built-in or plugin, in order of preference (the
    order `auto` tries them), whether it is available and why not."""
    rows = []
    for spec in (registry or default_registry()).ordered():
        reason = spec.unavailable_reason()
        caps = spec.capabilities
        rows.append(BackendInfo(
            name=spec.name, available=reason is None, reason=reason or "",
            edge_triggered=caps.edge_triggered, constant_time=caps.constant_time,
            fd_limit=caps.max_fd, source=spec.source, description=spec.description,
            in_matrix=spec.in_matrix))
    return rows
