"""Host muxio handlers on Twisted: a Twisted protocol that forwards to a muxio Protocol,
and a muxio Transport (flow control included) over Twisted's transport."""

from __future__ import annotations

import importlib
import signal
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import error as twisted_error
from twisted.internet import protocol as twisted_protocol
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from muxio.protocols import Protocol, ProtocolFactory, Scheduler


class _DelayedCall:
    def __init__(self, call: Any) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class TwistedScheduler:
    """`muxio.protocols.Scheduler` over a Twisted reactor."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def time(self) -> float:
        return float(self._reactor.seconds())

    def call_soon(self, callback: Callable[..., object], *args: object) -> _DelayedCall:
        return _DelayedCall(self._reactor.callLater(0, callback, *args))

    def call_later(self, delay: float, callback: Callable[..., object],
                   *args: object) -> _DelayedCall:
        return _DelayedCall(self._reactor.callLater(max(delay, 0), callback, *args))


@implementer(IPushProducer)
class TwistedTransport:
    """A muxio Transport over a Twisted ITCPTransport. Twisted tells a registered
    streaming producer to pause when its write buffer is full: that becomes
    pause_writing/resume_writing for the muxio protocol."""

    def __init__(self, transport: Any, protocol: Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closing = False
        self._reading = True
        transport.registerProducer(self, True)

    # IPushProducer, called by Twisted about *our writes*
    def pauseProducing(self) -> None:
        self._protocol.pause_writing()

    def resumeProducing(self) -> None:
        self._protocol.resume_writing()

    def stopProducing(self) -> None:
        self._closing = True

    # muxio Transport
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            self._transport.write(bytes(data))

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        self._transport.loseWriteConnection()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._closing = True
        self._transport.loseConnection()

    def abort(self) -> None:
        self._closing = True
        self._transport.abortConnection()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._transport.pauseProducing()

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._transport.resumeProducing()

    def is_reading(self) -> bool:
        return self._reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is not None:
            self._transport.bufferSize = high

    def get_write_buffer_size(self) -> int:
        return len(getattr(self._transport, "dataBuffer", b"")) + sum(
            len(chunk) for chunk in getattr(self._transport, "_tempDataBuffer", []))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        high = int(getattr(self._transport, "bufferSize", 65536))
        return high // 4, high

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            peer = self._transport.getPeer()
            return (peer.host, peer.port)
        if name == "sockname":
            host = self._transport.getHost()
            return (host.host, host.port)
        if name == "socket":
            return self._transport.getHandle()
        if name == "transport":
            return "tcp"
        if name == "backend":
            return "twisted"
        return default


@implementer(IHalfCloseableProtocol)
class TwistedProtocol(twisted_protocol.Protocol):
    """Forwards Twisted's callbacks to one muxio Protocol."""

    def __init__(self, handler: Protocol) -> None:
        self.handler = handler
        self.adapter: TwistedTransport | None = None

    def connectionMade(self) -> None:
        self.adapter = TwistedTransport(self.transport, self.handler)
        self.handler.connection_made(self.adapter)

    def dataReceived(self, data: bytes) -> None:
        self.handler.data_received(data)

    def readConnectionLost(self) -> None:
        if not self.handler.eof_received():
            transport: Any = self.transport
            transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Our write side is shut; nothing to tell the muxio protocol."""

    def connectionLost(self, reason: Failure = twisted_protocol.connectionDone) -> None:
        failure: Any = reason
        clean = failure.check(twisted_error.ConnectionDone) is not None
        exc = None if clean else ConnectionResetError(str(reason.value))
        self.handler.connection_lost(exc)


class TwistedFactory(twisted_protocol.Factory):
    def __init__(self, factory: ProtocolFactory) -> None:
        self._factory = factory

    def buildProtocol(self, addr: Any) -> TwistedProtocol:
        return TwistedProtocol(self._factory())


def run(build: Callable[[Scheduler], ProtocolFactory], host: str, port: int,
        ready: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM on Twisted's default (epoll) reactor."""
    reactor: Any = importlib.import_module("twisted.internet.reactor")
    factory = build(TwistedScheduler(reactor))
    listening = reactor.listenTCP(port, TwistedFactory(factory), interface=host)
    address = listening.getHost()
    reactor.callWhenRunning(ready, f"{address.host}:{address.port}")
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run()
