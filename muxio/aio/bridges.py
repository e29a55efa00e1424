"""Bridges: a muxio transport handed to an asyncio protocol as an `asyncio.Transport`.

Theory of operation
-------------------
A muxio transport (TCP, UDP, KCP) drives a muxio protocol; an asyncio protocol wants an
`asyncio.Transport`. One bridge per connection plays both parts: it is the *protocol*
of the muxio transport and the *transport* of the asyncio protocol. The two sets of
names do not overlap (connection_made, data_received, eof_received, connection_lost,
pause_writing, resume_writing one way; write, close, pause_reading, get_extra_info...
the other way), so one object is enough.

No extra Python frame on the data path: when the muxio transport connects, the bridge
stores the other side's bound methods as instance attributes (`bridge.write =
tcp.write`, `bridge.data_received = protocol.data_received`). asyncio code calling
`transport.write(data)` runs `TcpTransport.write` directly, and the muxio transport's
`self._protocol.data_received(data)` runs the asyncio protocol's method directly. Only
rare events do work of their own: connection_lost (server bookkeeping), pause/resume of
writing (the `_protocol_paused` flag asyncio's sendfile fallback reads), set_protocol.

A bridge is an `asyncio.Transport` (through asyncio's `_FlowControlMixin`, like
asyncio's own socket transports), so `isinstance` checks, the sendfile fallback and the
loop's fd bookkeeping (`sock_recv` refuses an fd a transport owns) behave as on
asyncio's loop. Differences from asyncio's selector transports, on purpose:
- writes are sent once per loop iteration, all connections' writes in one pass right
  before the next poll (muxio's write path, see muxio/transports/tcp.py), rather than
  inside `write()`; `Loop.flush()` sends them before the loop stops, so nothing waits;
- `connection_made` runs inside the transport's construction, before the loop's next
  iteration (asyncio schedules it with call_soon): no data can arrive earlier either way;
- the muxio transport's callbacks run in the loop thread's context, not in a copy made
  per transport (asyncio runs them through a Handle and its `contextvars` context);
- an `asyncio.BufferedProtocol` gets its bytes copied into `get_buffer()` buffers by the
  bridge (asyncio's loop reads into them directly).

TLS: an SslBridge is the handler of muxio's TLS layer (`tls_layer`), which is the
protocol of the muxio transport; until the handshake is done the bridge has no muxio
side yet (`_pending` is the layer, so close/abort still reach it). start_tls moves a
connection from its plain bridge to a new SslBridge (`hand_over`). When a connection is
lost, the bridge lets go of the muxio side (and a TLS session with its SSLContext) and
answers from a `_Finished` copy of its extra info: asyncio code keeps transports around,
and must not keep sessions alive that way.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
from asyncio import BaseProtocol, BufferedProtocol, constants, trsock
from asyncio import transports as aio_transports
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from muxio.aio.errors import TlsHandshakeAbortedError, TlsHandshakeResetError
from muxio.errors import TlsHandshakeError
from muxio.protocols import DatagramProtocol as MuxioDatagramProtocol
from muxio.protocols import Protocol as MuxioProtocol
from muxio.transports.flow import water_marks
from muxio.transports.tls import TlsTransport

if TYPE_CHECKING:
    import asyncio

    from muxio.aio.loop import EventLoop
    from muxio.transports.tcp import TcpTransport
    from muxio.transports.udp import UdpTransport

def _server_attach(server: Any, transport: StreamBridge) -> None:
    """asyncio's Server counts its connections (and, from Python 3.13, keeps them for
    close_clients/abort_clients)."""
    if _SERVER_KEEPS_TRANSPORTS:
        server._attach(transport)
    else:
        server._attach()


def _server_detach(server: Any, transport: StreamBridge) -> None:
    if _SERVER_KEEPS_TRANSPORTS:
        server._detach(transport)
    else:
        server._detach()


def _server_swap(server: Any, old: StreamBridge, new: StreamBridge) -> None:
    """start_tls: the server's connection is now `new` (Python 3.13 keeps the transports
    for close_clients and wait_closed; before, it only counts them)."""
    if _SERVER_KEEPS_TRANSPORTS:
        server._clients.discard(old)
        server._clients.add(new)


_SERVER_KEEPS_TRANSPORTS = sys.version_info >= (3, 13)


def keep_fin(sock: socket.socket) -> None:
    """Undo the zero linger muxio's abort sets, before the socket is closed: the close
    then ends the connection with a FIN, as asyncio's abort does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
    except OSError:
        pass  # already closed: nothing left to choose


_LINGER_OFF = struct.pack("ii", 0, 0)


DETACHED = MuxioProtocol()
"""The protocol a lost muxio transport is left with: it hears nothing more anyway."""


class InnerLink:
    """Given to a TLS layer as `on_lost`: once its session ends, the muxio transport under
    it lets go of it (muxio's TcpTransport is freed by the cyclic GC only, and must not
    keep the session and its SSLContext alive until then, which asyncio code expects)."""

    def __init__(self) -> None:
        self.inner: Any = None

    def __call__(self, layer: TlsTransport) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.set_protocol(DETACHED)


class _Finished:
    """What a bridge talks to once its connection is lost: a closed transport that keeps
    a copy of the extra info and nothing of the connection."""

    _KEPT = ("peername", "sockname", "socket", "transport", "backend", "conv", "peercert",
             "cipher", "compression", "alpn_protocol", "server_name")
    """Extra info still answered after the end (not ssl_object/sslcontext, which would
    keep the TLS context alive)."""

    def __init__(self, inner: Any) -> None:
        self._extra = {name: inner.get_extra_info(name) for name in self._KEPT}
        self._limits: tuple[int, int] = inner.get_write_buffer_limits()
        self._can_write_eof = bool(inner.can_write_eof())

    def write(self, data: object) -> None:
        """Ignored, as asyncio ignores writes to a lost connection."""

    writelines = write

    def write_eof(self) -> None:
        """Nothing left to shut down."""

    def can_write_eof(self) -> bool:
        return self._can_write_eof

    def is_closing(self) -> bool:
        return True

    def close(self) -> None:
        """Already closed."""

    abort = close
    pause_reading = close
    resume_reading = close

    def is_reading(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._limits

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high, low = water_marks(high, low)
        self._limits = (low, high)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        value = self._extra.get(name)
        return default if value is None else value

    def __repr__(self) -> str:
        return f"<closed transport {self._extra.get('peername')}>"


def _bind(obj: object, **methods: Callable[..., Any]) -> None:
    """Store bound methods as instance attributes: a call finds them before the class's
    own methods, and reaches the other side with no intermediate Python frame."""
    vars(obj).update(methods)


SSL_HANDSHAKE_TIMEOUT = constants.SSL_HANDSHAKE_TIMEOUT
"""asyncio's default (60 s) when `ssl_handshake_timeout` is not given (muxio's own servers
use 10 s)."""
SSL_SHUTDOWN_TIMEOUT = getattr(constants, "SSL_SHUTDOWN_TIMEOUT", 30.0)

_NOT_CONNECTED = "the transport is not connected yet (its muxio transport was not created)"


def socket_extra(sock: socket.socket, extra: dict[str, Any]) -> None:
    """The extra-info keys asyncio's socket transports provide."""
    extra["socket"] = trsock.TransportSocket(sock)
    try:
        extra.setdefault("sockname", sock.getsockname())
    except OSError:
        extra.setdefault("sockname", None)
    if "peername" not in extra:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None


class StreamBridge(aio_transports._FlowControlMixin, aio_transports.Transport,
                   MuxioProtocol):
    """An asyncio stream transport over a muxio stream transport (TCP, UNIX, KCP)."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    """os.sendfile on the socket (SslBridge: asyncio's fallback, read then write)."""

    _protocol: BaseProtocol
    _loop: EventLoop
    _extra: dict[str, Any]
    _protocol_paused: bool

    def __init__(self, loop: EventLoop, protocol: BaseProtocol, *,
                 sock: socket.socket | None = None, extra: dict[str, Any] | None = None,
                 server: asyncio.Server | None = None,
                 hold_until: asyncio.Future[Any] | None = None,
                 announce: bool = True) -> None:
        """`hold_until`: deliver no data before this future is done and the task awaiting
        it has resumed (see `hold_reading`); client connections pass their waiter.
        `announce=False`: the protocol already has a transport and is not told
        connection_made again (start_tls)."""
        super().__init__(dict(extra or {}), loop)
        self._protocol = protocol
        self._hold_until = hold_until
        self._announce = announce
        self._attached = False
        self._closed_early = False
        self._pending: Any = None
        """What to close or abort before the muxio side reaches us (the TLS layer, while
        its handshake runs)."""
        self._sock = sock
        self._sock_fd = sock.fileno() if sock is not None else -1
        self._server = server
        self._inner: Any = None
        self._lost = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_for_drain = False
        self._extra["backend"] = loop.backend
        if sock is not None:
            socket_extra(sock, self._extra)

    # -- as the muxio transport's protocol -----------------------------------------------

    def connection_made(self, transport: Any) -> None:
        """The muxio transport exists: bind its methods here, then tell asyncio's side."""
        self._pending = None
        self._bind_inner(transport)
        self._bind_protocol(self._protocol)
        if self._sock is not None:
            self._loop._transports[self._sock_fd] = self
        self.attach_server()
        if self._hold_until is not None:
            self.hold_reading(self._hold_until)
            self._hold_until = None
        if self._announce:
            self._protocol.connection_made(self)

    def _bind_inner(self, transport: Any) -> None:
        self._inner = transport
        _bind(self, write=transport.write, writelines=transport.writelines,
              write_eof=transport.write_eof, can_write_eof=transport.can_write_eof,
              is_closing=transport.is_closing, close=transport.close,
              pause_reading=transport.pause_reading, resume_reading=transport.resume_reading,
              is_reading=transport.is_reading,
              get_write_buffer_size=transport.get_write_buffer_size,
              get_write_buffer_limits=transport.get_write_buffer_limits,
              set_write_buffer_limits=transport.set_write_buffer_limits)

    def _bind_protocol(self, protocol: BaseProtocol) -> None:
        stream = cast("asyncio.Protocol", protocol)
        _bind(self, data_received=(self._copy_into_buffers
                                   if isinstance(protocol, BufferedProtocol)
                                   else stream.data_received),
              eof_received=stream.eof_received)

    def _copy_into_buffers(self, data: bytes) -> None:
        protocol = self._protocol
        assert isinstance(protocol, BufferedProtocol)
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
            room = len(buffer)
            if not room:
                raise RuntimeError("get_buffer() returned an empty buffer")
            taken = min(room, len(view))
            buffer[:taken] = view[:taken]
            protocol.buffer_updated(taken)
            view = view[taken:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("the connection was lost during sendfile"))
        try:
            self._protocol.connection_lost(exc)
        finally:
            if self._sock is not None and self._loop._transports.get(self._sock_fd) is self:
                del self._loop._transports[self._sock_fd]
            server, self._server = self._server, None
            if server is not None and self._attached:
                _server_detach(server, self)
            # Let go of the muxio transport (and a TLS session with its SSLContext): a
            # protocol that keeps its transport must not keep the connection alive, and
            # the muxio transport, freed by the cyclic GC only, must not keep the protocol.
            inner = self._inner
            self._bind_inner(_Finished(inner))
            inner.set_protocol(DETACHED)

    def pause_writing(self) -> None:
        if self._drain_waiter is not None and not self._protocol_paused:
            self._paused_for_drain = True  # our own water marks at 0 (sendfile), not theirs
            return
        self._protocol_paused = True
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._paused_for_drain:
            self._paused_for_drain = False
            return
        if self._protocol_paused:
            self._protocol_paused = False
            self._protocol.resume_writing()

    # -- as the asyncio protocol's transport (replaced by bound methods once connected) ---

    def _connected(self) -> Any:
        if self._inner is None:
            raise RuntimeError(_NOT_CONNECTED)
        return self._inner

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._connected().write(data)

    def is_closing(self) -> bool:
        if self._inner is None:
            return self._closed_early
        return bool(self._inner.is_closing())

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            return
        self._closed_early = True  # e.g. create_connection cancelled in the TLS handshake
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()

    def abort(self) -> None:
        """Close now, dropping what is buffered. The peer gets a FIN, as from asyncio's
        abort (muxio's own abort resets the connection)."""
        target = self._inner if self._inner is not None else self._pending
        self._pending = None
        self._closed_early = True
        if target is not None:
            target.abort()
        if self._sock is not None:
            keep_fin(self._sock)

    def attach_server(self) -> None:
        """Count this connection on its server (once). Plain connections are counted when
        their muxio transport connects, which is at accept; TLS ones at accept too,
        before their handshake, as asyncio counts them: a server closed meanwhile must
        still take them (asyncio's Server refuses an attach once closed)."""
        if self._server is not None and not self._attached:
            self._attached = True
            _server_attach(self._server, self)

    def detach_server(self) -> None:
        """The connection ends before its protocol heard of it (a failed TLS handshake)."""
        server, self._server = self._server, None
        if server is not None and self._attached:
            self._attached = False
            _server_detach(server, self)

    def hand_over(self, successor: StreamBridge) -> None:
        """start_tls: `successor` (over the TLS layer) now owns the connection, so the
        server's count of it and the fd's entry move there; this bridge hears no more."""
        successor._server, self._server = self._server, None
        successor._attached, self._attached = self._attached, False
        if successor._server is not None and successor._attached:
            _server_swap(successor._server, self, successor)
        if self._sock is not None and self._loop._transports.get(self._sock_fd) is self:
            del self._loop._transports[self._sock_fd]

    def get_write_buffer_size(self) -> int:
        return 0 if self._inner is None else int(self._inner.get_write_buffer_size())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        if self._inner is not None:
            return self._inner.get_extra_info(name, default)
        return default

    def get_protocol(self) -> BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: BaseProtocol) -> None:
        self._protocol = protocol
        if self._inner is not None:
            self._bind_protocol(protocol)

    async def wait_drained(self) -> None:
        """Until every byte written so far is in the kernel (sendfile must not overtake
        them). Writes queued in this iteration leave before the next poll; what the
        kernel did not take waits in the transport's buffer, and with both water marks
        at 0 the transport calls resume_writing once that buffer is empty."""
        inner = self._connected()
        if not inner.get_write_buffer_size():
            return
        loop = self._loop
        ready = loop.create_future()
        loop.call_soon(ready.set_result, None)  # the queue is sent before the next poll
        await ready
        if not inner.get_write_buffer_size():
            return
        if inner.is_closing():
            raise ConnectionError("the connection is closing")
        low, high = inner.get_write_buffer_limits()
        self._drain_waiter = waiter = loop.create_future()
        try:
            inner.set_write_buffer_limits(0, 0)
            await waiter
        finally:
            self._drain_waiter = None
            inner.set_write_buffer_limits(high, low)

    def hold_reading(self, until: asyncio.Future[Any]) -> None:
        """Deliver no data before `until` is done and the task awaiting it has resumed.

        asyncio's loop starts reading a new connection one iteration after
        connection_made, so `transport, protocol = await loop.create_connection(...)`
        always returns before the first data_received: code relies on that (a protocol
        callback using the `transport` variable the caller just assigned). muxio's
        transport reads from the start; the hold restores asyncio's order. The done
        callback is registered before the caller awaits `until`, so it runs in the same
        ready pass as the caller's wakeup, and the next poll delivers the data after it.
        While held, pause_reading/resume_reading only record what the protocol wants."""
        inner = self._connected()
        inner.pause_reading()
        wants_reading = True

        def pause_held() -> None:
            nonlocal wants_reading
            wants_reading = False

        def resume_held() -> None:
            nonlocal wants_reading
            wants_reading = True

        def is_reading_held() -> bool:
            return wants_reading and not inner.is_closing()

        def release(_: object) -> None:
            _bind(self, pause_reading=inner.pause_reading,
                  resume_reading=inner.resume_reading, is_reading=inner.is_reading)
            if wants_reading and not inner.is_closing():
                inner.resume_reading()

        _bind(self, pause_reading=pause_held, resume_reading=resume_held,
              is_reading=is_reading_held)
        until.add_done_callback(release)

    def refuse_writes(self, reason: str) -> None:
        """write()/writelines() raise RuntimeError(reason) until `accept_writes()` (asyncio
        refuses writes while sendfile runs: they would land in the middle of the file)."""

        def refused(*args: object) -> None:
            raise RuntimeError(reason)

        _bind(self, write=refused, writelines=refused)

    def accept_writes(self) -> None:
        inner = self._connected()
        _bind(self, write=inner.write, writelines=inner.writelines)

    @property
    def muxio_transport(self) -> TcpTransport | Any:
        """The muxio transport underneath (TcpTransport, KcpTransport...)."""
        return self._connected()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._inner!r}>"


class SslBridge(StreamBridge):
    """A StreamBridge over muxio's TLS layer (asyncio names these transports SSL ones,
    and code checks the class name). asyncio's sendfile fallback serves it: the layer
    encrypts, so os.sendfile cannot."""

    _sendfile_compatible = constants._SendfileMode.FALLBACK


class DatagramBridge(aio_transports._FlowControlMixin, aio_transports.DatagramTransport,
                     MuxioDatagramProtocol):
    """An asyncio datagram transport over muxio's UdpTransport."""

    _protocol: asyncio.DatagramProtocol
    _loop: EventLoop
    _extra: dict[str, Any]
    _protocol_paused: bool

    def __init__(self, loop: EventLoop, protocol: asyncio.DatagramProtocol,
                 sock: socket.socket, address: Any = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(dict(extra or {}), loop)
        self._protocol = protocol
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._address = address
        self._inner: UdpTransport | None = None
        self._extra["backend"] = loop.backend
        socket_extra(sock, self._extra)

    # -- as the muxio transport's protocol -----------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._inner = transport
        _bind(self, abort=transport.abort, close=transport.close,
              is_closing=transport.is_closing,
              get_write_buffer_size=transport.get_write_buffer_size,
              get_write_buffer_limits=transport.get_write_buffer_limits,
              set_write_buffer_limits=transport.set_write_buffer_limits)
        self._bind_protocol(self._protocol)
        self._loop._transports[self._sock_fd] = self
        self._protocol.connection_made(self)

    def _bind_protocol(self, protocol: asyncio.DatagramProtocol) -> None:
        _bind(self, datagram_received=protocol.datagram_received,
              error_received=protocol.error_received)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            if self._loop._transports.get(self._sock_fd) is self:
                del self._loop._transports[self._sock_fd]

    def hold_reading(self, until: asyncio.Future[Any]) -> None:
        """No datagram before `until` is done and its awaiting task resumed (see
        StreamBridge.hold_reading: the order asyncio's loop gives)."""
        inner = self._inner
        if inner is None or not inner.is_reading():
            return
        inner.pause_reading()

        def release(_: object) -> None:
            if not inner.is_closing():
                inner.resume_reading()

        until.add_done_callback(release)

    def pause_writing(self) -> None:
        self._protocol_paused = True
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self._protocol_paused:
            self._protocol_paused = False
            self._protocol.resume_writing()

    # -- as the asyncio protocol's transport ----------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """asyncio's rules (bytes-like data; on a connected endpoint the address is None or
        the peer's), then muxio's UdpTransport sends or queues it."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._address is not None:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = None
        inner = self._inner
        if inner is None:
            raise RuntimeError(_NOT_CONNECTED)
        inner.sendto(data, addr)

    def is_closing(self) -> bool:
        return self._inner is not None and self._inner.is_closing()

    def close(self) -> None:
        if self._inner is None:
            raise RuntimeError(_NOT_CONNECTED)
        self._inner.close()

    def get_write_buffer_size(self) -> int:
        return 0 if self._inner is None else self._inner.get_write_buffer_size()

    def get_protocol(self) -> asyncio.DatagramProtocol:
        return self._protocol

    def set_protocol(self, protocol: BaseProtocol) -> None:
        self._protocol = cast("asyncio.DatagramProtocol", protocol)
        if self._inner is not None:
            self._bind_protocol(self._protocol)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._inner!r}>"



def tls_layer(loop: EventLoop, bridge: SslBridge, context: ssl.SSLContext | None, *,
              server_side: bool, server_hostname: str | None,
              waiter: asyncio.Future[Any] | None, handshake_timeout: float | None,
              shutdown_timeout: float | None, link: InnerLink | None) -> TlsTransport:
    """muxio's TLS layer with `bridge` as its handler, for an asyncio protocol, with
    asyncio's rules: its default timeouts and contexts, and the handshake's outcome given
    to `waiter` as asyncio gives it: a refused certificate is the ssl.SSLError asyncio
    raises (muxio's reason added as a note), a handshake over time a
    ConnectionAbortedError saying so, a peer gone a ConnectionResetError (both also
    muxio's TlsHandshakeError). `link`: see InnerLink (None where the inner transport
    does not outlive its session)."""
    if not context:  # ssl=True: asyncio's default context, as its SSLProtocol makes it
        if server_side:
            raise ValueError("Server side SSL needs a valid SSLContext")
        context = ssl.create_default_context()
        if not server_hostname:
            context.check_hostname = False
    timeout = handshake_timeout or SSL_HANDSHAKE_TIMEOUT
    timer: asyncio.TimerHandle | None = None

    def finished(layer: TlsTransport, error: TlsHandshakeError | None) -> None:
        if timer is not None:
            timer.cancel()
        bridge._pending = None  # no cycle bridge <-> layer: the session (and its
        # SSLContext) goes by reference counting, not at a later GC pass
        if error is not None:
            bridge.detach_server()
        if waiter is None or waiter.done():
            return
        if error is None:
            waiter.set_result(None)
            return
        cause = error.__cause__
        if isinstance(cause, ssl.SSLError):
            if sys.version_info >= (3, 11):
                cause.add_note(str(error))
            waiter.set_exception(cause)
        else:
            waiter.set_exception(TlsHandshakeResetError(str(error), reason=error.reason,
                                                        peer=error.peer))

    def too_slow(layer: TlsTransport) -> None:
        if waiter is not None and not waiter.done():
            message = (f"SSL handshake is taking longer than {timeout} seconds: aborting "
                       f"the connection")
            waiter.set_exception(TlsHandshakeAbortedError(
                message, reason=f"not completed within {timeout:g} s (handshake timeout)",
                peer=bridge.get_extra_info("peername")))
        bridge.abort()

    layer = TlsTransport(context, loop.muxio_loop, server_side=server_side,
                         app_protocol=bridge,
                         server_hostname=server_hostname or None,  # asyncio: "" = none
                         handshake_timeout=timeout + _HANDSHAKE_BACKSTOP,
                         close_timeout=shutdown_timeout or SSL_SHUTDOWN_TIMEOUT,
                         on_handshake=finished, on_lost=link)
    timer = loop.call_later(timeout, too_slow, layer)
    bridge._pending = layer
    return layer


_HANDSHAKE_BACKSTOP = 1.0
"""The layer's own handshake timeout comes this much after ours (asyncio's error and
message are ours to give)."""
