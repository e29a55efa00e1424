"""The baseline the HTTP handler is measured against: the least an httptools server does.

`MinimalHttpProtocol` parses requests with httptools (llhttp, as the full handler does) and
answers every complete message with one fixed, pre-encoded `200 OK` carrying the hello
endpoint's body: no routing, no Date or Server header, no timers, no limits beyond
llhttp's, no request objects. It closes the connection when the client did not ask for
keep-alive and on a parse error (with a fixed 400).

Hosted on a loop, its server CPU per request is that loop's and transport's cost plus
llhttp's and the kernel's; hosted beside the full handler (`muxio bench http --protocol
minimal`, `muxio serve http --protocol minimal`), the difference between the two is what
the handler itself costs per request. It imports only `muxio.protocols` (and httptools),
like a handler, so the same class runs on muxio's loop, asyncio, uvloop and Twisted.

It is a measuring stick, not a server: it has no header or body size limits and no
timeouts. Do not expose it.
"""

from __future__ import annotations

import httptools

from muxio.protocols import Protocol, Transport

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n"
            b"Hello, World!\n")
"""The hello endpoint's status and body, minus the headers the full handler adds itself
(Date, Server)."""

BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n"
               b"\r\n")


class MinimalHttpProtocol(Protocol):
    """One connection: httptools in, one fixed response per complete request out."""

    __slots__ = ("transport", "_parser")

    def __init__(self) -> None:
        self.transport: Transport | None = None
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            return  # closing after an error: the rest is ignored
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            # An upgrade is refused too: a baseline speaks nothing but HTTP/1.1.
            self._parser = None
            transport = self.transport
            if transport is not None:
                transport.write(BAD_REQUEST)
                transport.close()

    # httptools calls this inside feed_data, once per complete request.
    def on_message_complete(self) -> None:
        transport = self.transport
        parser = self._parser
        if transport is None or parser is None:
            return
        transport.write(RESPONSE)
        if not parser.should_keep_alive():
            self._parser = None
            transport.close()

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._parser = None  # the parser holds us: break the cycle now
