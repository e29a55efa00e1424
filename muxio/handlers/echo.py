"""Echo: every byte received is written back, with flow control in both directions.

If the peer stops reading, our writes buffer up; past the transport's high-water mark
`pause_writing` is called and we stop reading from the peer until the buffer drains,
so memory per connection stays bounded by the water mark.

Hosting shape (see `muxio.handlers`): echo has no options, so its config is None.
"""

from __future__ import annotations

import argparse

from muxio.protocols import Protocol, ProtocolFactory, Scheduler, Transport

DESCRIPTION = "echo every byte back (TCP or KCP)"
ALPN: tuple[str, ...] = ("echo",)
"""What a TLS host offers in ALPN for this protocol."""


class EchoProtocol(Protocol):
    __slots__ = ("transport",)

    def __init__(self) -> None:
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def eof_received(self) -> bool:
        # Half-close: the peer is done sending; finish echoing, then close our side.
        # Without half-close (TLS), close: close() still sends what is buffered first.
        assert self.transport is not None
        if self.transport.can_write_eof():
            self.transport.write_eof()
            return True
        return False

    def pause_writing(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Echo has no options of its own."""


def config_from(args: argparse.Namespace) -> None:
    """Echo has no config."""
    return None


def protocol_factory(scheduler: Scheduler, config: None = None) -> ProtocolFactory:
    """A new EchoProtocol per connection (it needs no timers, so `scheduler` is unused)."""
    return EchoProtocol
