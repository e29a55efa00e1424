"""KCP for asyncio code: connections, servers and asyncio streams over muxio's KCP.

    reader, writer = await muxio.aio.open_kcp_connection("127.0.0.1", 9000)
    server = await muxio.aio.start_kcp_server(handle_client, "127.0.0.1", 9000)

The same calls as asyncio's (`create_connection`, `create_server`, `open_connection`,
`start_server`), on muxio's KCP transport (ikcp-compatible ARQ over UDP, see
muxio/transports/kcp). They need the muxio.aio loop, since the transport runs on the
muxio Loop underneath it. KCP has no handshake: a connection "succeeds" at once, and an
unreachable peer shows up as connection_lost(ConnectionRefusedError) (ICMP) or
TimeoutError (dead link / idle timeout).

`ssl=` (an SSLContext) puts muxio's TLS layer on the KCP session, with the same
arguments and rules as asyncio's `ssl=` over TCP (see bridges.tls_layer): the connection
is made once the TLS handshake is done, and a refused certificate raises the
ssl.SSLError asyncio raises. TLS over KCP, for asyncio code.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from asyncio import trsock
from collections.abc import Awaitable, Callable
from typing import Any

from muxio.aio.bridges import InnerLink, SslBridge, StreamBridge, tls_layer
from muxio.aio.loop import EventLoop
from muxio.errors import MuxioError
from muxio.transports.kcp import transport as kcp
from muxio.transports.kcp.core import FAST, KcpProfile

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                           Awaitable[None] | None]
STREAM_LIMIT = 2 ** 16
"""asyncio streams' default buffer limit."""


class KcpNeedsMuxioLoopError(MuxioError, TypeError):
    """KCP for asyncio code was called on a loop that is not muxio.aio's."""


def _running_muxio_loop() -> EventLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, EventLoop):
        raise KcpNeedsMuxioLoopError(
            f"KCP for asyncio code runs on muxio.aio's loop, not on {type(loop).__name__}: "
            f"start it with muxio.aio.run(...) or asyncio.Runner(loop_factory="
            f"muxio.aio.new_event_loop)")
    return loop


async def _resolve(loop: EventLoop, host: str, port: int) -> str:
    """An IP literal for `host` (muxio's KCP connect resolves synchronously otherwise)."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned nothing")
    return str(infos[0][4][0])


async def create_kcp_connection(protocol_factory: ProtocolFactory, host: str, port: int, *,
                                profile: KcpProfile = FAST,
                                idle_timeout: float | None = 120.0,
                                conv: int | None = None,
                                ssl: ssl_module.SSLContext | bool | None = None,
                                server_hostname: str | None = None,
                                ssl_handshake_timeout: float | None = None,
                                ssl_shutdown_timeout: float | None = None,
                                ) -> tuple[StreamBridge, asyncio.BaseProtocol]:
    """Open a KCP session to host:port; returns (transport, protocol) like
    `loop.create_connection`, with TLS over the session when `ssl` is given."""
    loop = _running_muxio_loop()
    if not ssl and (server_hostname is not None or ssl_handshake_timeout is not None
                    or ssl_shutdown_timeout is not None):
        raise ValueError("server_hostname, ssl_handshake_timeout and ssl_shutdown_timeout "
                         "are only meaningful with ssl")
    address = await _resolve(loop, host, port)
    protocol = protocol_factory()
    if ssl:
        return await _tls_connection(
            loop, protocol, address, port, context=ssl,
            server_hostname=host if server_hostname is None else server_hostname,
            handshake_timeout=ssl_handshake_timeout, shutdown_timeout=ssl_shutdown_timeout,
            profile=profile, idle_timeout=idle_timeout, conv=conv)
    returned = loop.create_future()  # data flows once the caller has the transport
    bridge = StreamBridge(loop, protocol, hold_until=returned)
    try:
        await kcp.connect(lambda: bridge, address, port, loop=loop.muxio_loop, conv=conv,
                          profile=profile, idle_timeout=idle_timeout)
    finally:
        returned.set_result(None)
    return bridge, protocol


async def _tls_connection(loop: EventLoop, protocol: asyncio.BaseProtocol, address: str,
                          port: int, *, context: ssl_module.SSLContext | bool,
                          server_hostname: str, handshake_timeout: float | None,
                          shutdown_timeout: float | None,
                          **session: Any) -> tuple[StreamBridge, asyncio.BaseProtocol]:
    """KCP, then muxio's TLS layer, then the bridge; returns once the handshake is done."""
    waiter = loop.create_future()
    bridge = SslBridge(loop, protocol)
    link = InnerLink()
    layer = tls_layer(loop, bridge, context if isinstance(context, ssl_module.SSLContext)
                      else None, server_side=False, server_hostname=server_hostname,
                      waiter=waiter, handshake_timeout=handshake_timeout,
                      shutdown_timeout=shutdown_timeout, link=link)
    try:
        link.inner, _ = await kcp.connect(lambda: layer, address, port, loop=loop.muxio_loop,
                                          **session)
        await waiter
    except BaseException:
        bridge.close()
        raise
    return bridge, protocol


class KcpServer(asyncio.AbstractServer):
    """An `asyncio.AbstractServer` over muxio's KCP server (serving from creation on)."""

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._inner: kcp.KcpServer | None = None
        self._closed = False
        self._active = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None

    def _attach(self, transport: object = None) -> None:
        """A session started (the bridge passes itself from Python 3.13 on, as it does to
        asyncio's Server)."""
        self._active += 1

    def _detach(self, transport: object = None) -> None:
        self._active -= 1
        if self._active == 0 and self._closed:
            self._wakeup()

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def sockets(self) -> tuple[trsock.TransportSocket, ...]:
        if self._inner is None or self._closed:
            return ()
        return tuple(trsock.TransportSocket(sock) for sock in self._inner.sockets)

    @property
    def port(self) -> int:
        """The UDP port sessions are accepted on."""
        if self._inner is None:
            raise RuntimeError("the server is not listening")
        return self._inner.port

    def close(self) -> None:
        """Stop accepting sessions; established ones go on (see close_clients)."""
        if self._closed:
            return
        self._closed = True
        if self._inner is not None:
            self._inner.close()
        serving = self._serving_forever
        if serving is not None and not serving.done():
            serving.cancel()
        if self._active == 0:
            self._wakeup()

    def close_clients(self) -> None:
        if self._inner is not None:
            self._inner.close_clients()

    def abort_clients(self) -> None:
        if self._inner is not None:
            self._inner.abort_clients()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed

    async def start_serving(self) -> None:
        """KCP servers serve from the moment they are created."""

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    async def wait_closed(self) -> None:
        """Until the server is closed and its last session is gone."""
        if self._closed and self._active == 0:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def __repr__(self) -> str:
        port = self._inner.port if self._inner is not None and not self._closed else None
        return f"<KcpServer port={port} sessions={self._active}>"


async def create_kcp_server(protocol_factory: ProtocolFactory, host: str | None = "127.0.0.1",
                            port: int = 0, *, profile: KcpProfile = FAST,
                            idle_timeout: float | None = 120.0,
                            max_sessions: int = 10000,
                            ssl: ssl_module.SSLContext | None = None,
                            ssl_handshake_timeout: float | None = None,
                            ssl_shutdown_timeout: float | None = None) -> KcpServer:
    """Accept KCP sessions on UDP host:port, each with a protocol from the factory, like
    `loop.create_server` ('localhost' listens on 127.0.0.1 and ::1); with `ssl`, each
    session is TLS (the protocol's connection_made comes after the handshake)."""
    loop = _running_muxio_loop()
    if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
        raise TypeError(f"ssl argument must be an SSLContext or None, not {ssl!r}")
    if ssl is None and (ssl_handshake_timeout is not None or ssl_shutdown_timeout is not None):
        raise ValueError("ssl_handshake_timeout and ssl_shutdown_timeout are only "
                         "meaningful with ssl")
    server = KcpServer(loop)

    def bridged() -> StreamBridge:
        return StreamBridge(loop, protocol_factory(), server=server)  # type: ignore[arg-type]

    def secured() -> Any:
        # A failed handshake ends the session quietly (asyncio reports it only in
        # debug mode); the protocol never hears of it.
        bridge = SslBridge(loop, protocol_factory(), server=server)  # type: ignore[arg-type]
        bridge.attach_server()  # from the session's start, before its handshake
        return tls_layer(loop, bridge, ssl, server_side=True, server_hostname=None,
                         waiter=None, handshake_timeout=ssl_handshake_timeout,
                         shutdown_timeout=ssl_shutdown_timeout, link=None)

    server._inner = kcp.serve(bridged if ssl is None else secured, host, port,
                              loop=loop.muxio_loop, profile=profile,
                              idle_timeout=idle_timeout, max_sessions=max_sessions)
    return server


async def open_kcp_connection(host: str, port: int, *, limit: int = STREAM_LIMIT,
                              **kwargs: Any) -> tuple[asyncio.StreamReader,
                                                      asyncio.StreamWriter]:
    """`asyncio.open_connection` over KCP."""
    loop = _running_muxio_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_kcp_connection(lambda: protocol, host, port, **kwargs)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def start_kcp_server(client_connected_cb: ClientConnected, host: str | None = "127.0.0.1",
                           port: int = 0, *, limit: int = STREAM_LIMIT,
                           **kwargs: Any) -> KcpServer:
    """`asyncio.start_server` over KCP."""
    loop = _running_muxio_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_kcp_server(factory, host, port, **kwargs)
