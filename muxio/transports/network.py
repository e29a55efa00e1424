"""The network a sans-I/O client driver needs, on a muxio loop: timers from the loop, UDP
endpoints from `muxio.transports.udp`, TCP connections from `muxio.transports.tcp`.

A client written against the handler API (e.g. the DNS resolver in
`muxio.handlers.dns.client`, a sans-I/O core and a driver) asks a `Network` for
sockets instead of opening them; this module is that network over real sockets:

    from muxio.handlers.dns import Resolver
    from muxio.transports.network import LoopNetwork

    resolver = Resolver(LoopNetwork(loop), ["127.0.0.1:5353"], timeout=1.0, tries=2)
    message = loop.run_until_complete(resolver.query("example.com", "MX"), timeout=10)
"""

from __future__ import annotations

from collections.abc import Callable

from muxio.futures import Future
from muxio.loop import Handle, Loop, TimerHandle
from muxio.protocols import (
    DatagramProtocol,
    DatagramProtocolFactory,
    DatagramTransport,
    Protocol,
    ProtocolFactory,
    Transport,
)
from muxio.transports import tcp, udp

CLIENT_RCVBUF = 256 * 1024
"""SO_RCVBUF of a resolver's UDP socket: replies to one query, not a server's burst."""


class LoopNetwork:
    """A `muxio.handlers.dns.client.Network` over a muxio Loop."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def time(self) -> float:
        return self.loop.time()

    def call_soon(self, callback: Callable[..., object], *args: object) -> Handle:
        return self.loop.call_soon(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object],
                   *args: object) -> TimerHandle:
        return self.loop.call_later(delay, callback, *args)

    def open_datagram(self, protocol_factory: DatagramProtocolFactory,
                      family: int) -> tuple[DatagramTransport, DatagramProtocol]:
        return udp.create_endpoint(protocol_factory, loop=self.loop, family=family,
                                   rcvbuf=CLIENT_RCVBUF)

    def open_stream(self, protocol_factory: ProtocolFactory, host: str, port: int,
                    timeout: float) -> Future[tuple[Transport, Protocol]]:
        result: Future[tuple[Transport, Protocol]] = Future(self.loop)
        connecting = tcp.connect(protocol_factory, host, port, loop=self.loop,
                                 timeout=timeout)

        def done(future: Future[tuple[tcp.TcpTransport, Protocol]]) -> None:
            if result.done():
                if not future.cancelled() and future.exception() is None:
                    future.result()[0].abort()
                return
            if future.cancelled():
                result.cancel()
            elif (error := future.exception()) is not None:
                result.set_exception(error)
            else:
                result.set_result(future.result())

        connecting.add_done_callback(done)
        return result

    def __repr__(self) -> str:
        return f"<LoopNetwork {self.loop!r}>"
