"""One log line per connection, or per DNS query, when `muxio -v serve ...` asks for it.

The host wraps the handler's protocol factory, so no handler needs to know about it, and
only when the line will be logged: without -v the factory is returned as it is and the
serving path pays nothing. Lines go to the logger `muxio.serve.<service>` at INFO:

    INFO muxio.serve.echo: tcp connection from 127.0.0.1 port 41236
    INFO muxio.serve.dns: udp query from 127.0.0.1 port 50112: example.com. IN A
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from muxio.protocols import (
    Address,
    DatagramProtocol,
    DatagramProtocolFactory,
    DatagramTransport,
    Protocol,
    ProtocolFactory,
    Transport,
)

Describe = Callable[[bytes], str]
_FRAME_HEADER = 2
_MAX_FRAME = _FRAME_HEADER + 0xFFFF


def wanted(args: argparse.Namespace) -> bool:
    """True with -v (or more) on the command line."""
    return int(getattr(args, "verbose", 0) or 0) >= 1


def logger_for(service: str) -> logging.Logger:
    return logging.getLogger(f"muxio.serve.{service}")


def format_peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]} port {address[1]}"
    return str(address)


def log_connections(factory: ProtocolFactory, service: str,
                    args: argparse.Namespace) -> ProtocolFactory:
    """`factory`, or (with -v) one that logs each connection as it is made."""
    if not wanted(args):
        return factory
    log = logger_for(service)
    return lambda: LoggedConnection(factory(), log)


def log_queries(factory: ProtocolFactory, datagram_factory: DatagramProtocolFactory,
                service: str, args: argparse.Namespace,
                describe: Describe) -> tuple[ProtocolFactory, DatagramProtocolFactory]:
    """Both factories of a DNS-like service, or (with -v) ones that log each query: each
    datagram, and each length-prefixed message of a stream."""
    if not wanted(args):
        return factory, datagram_factory
    log = logger_for(service)
    return (lambda: LoggedStreamQueries(factory(), log, describe),
            lambda: LoggedDatagramQueries(datagram_factory(), log, describe))


class LoggedConnection(Protocol):
    """Forwards every callback to the handler; logs the connection once, as it is made."""

    __slots__ = ("inner", "log")

    def __init__(self, inner: Protocol, log: logging.Logger) -> None:
        self.inner = inner
        self.log = log

    def connection_made(self, transport: Transport) -> None:
        self.log.info("%s connection from %s", transport.get_extra_info("transport", "stream"),
                      format_peer(transport.get_extra_info("peername")))
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)


class LoggedStreamQueries(LoggedConnection):
    """Logs each 2-byte-length-prefixed message (DNS over TCP) before the handler sees the
    bytes. Holds at most one incomplete message (64 KiB): the framing's own bound."""

    __slots__ = ("_buffer", "_describe", "_peer", "_transport_name")

    def __init__(self, inner: Protocol, log: logging.Logger, describe: Describe) -> None:
        super().__init__(inner, log)
        self._describe = describe
        self._buffer = bytearray()
        self._peer = "?"
        self._transport_name = "stream"

    def connection_made(self, transport: Transport) -> None:
        self._peer = format_peer(transport.get_extra_info("peername"))
        self._transport_name = transport.get_extra_info("transport", "stream")
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _FRAME_HEADER:
            end = _FRAME_HEADER + int.from_bytes(buffer[:_FRAME_HEADER], "big")
            if len(buffer) < end:
                break
            self.log.info("%s query from %s: %s", self._transport_name, self._peer,
                          self._describe(bytes(buffer[_FRAME_HEADER:end])))
            del buffer[:end]
        assert len(buffer) < _MAX_FRAME
        self.inner.data_received(data)


class LoggedDatagramQueries(DatagramProtocol):
    """Logs each datagram as a query, then hands it to the handler."""

    __slots__ = ("_describe", "inner", "log")

    def __init__(self, inner: DatagramProtocol, log: logging.Logger,
                 describe: Describe) -> None:
        self.inner = inner
        self.log = log
        self._describe = describe

    def connection_made(self, transport: DatagramTransport) -> None:
        self.inner.connection_made(transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.log.info("udp query from %s: %s", format_peer(addr), self._describe(data))
        self.inner.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.inner.error_received(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)
