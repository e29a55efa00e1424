"""The same handler over every stream transport (TCP, KCP...) and backend, driven by a
muxio client protocol in the same loop: what makes "written once" true."""

from __future__ import annotations

import hashlib

import httptools

from muxio.handlers.http import http_protocol_factory
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports.registry import stream_transport
from tests.http.harness import build_request, make_app, pattern

UPLOAD = bytes(range(256)) * 800  # 200 KiB


class HttpClient(Protocol):
    """Sends a pipelined batch; parses the responses with httptools as they arrive."""

    def __init__(self, batch: bytes, expected: int) -> None:
        self.batch = batch
        self.expected = expected
        self.statuses: list[int] = []
        self.bodies: list[bytes] = []
        self._body = bytearray()
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Transport | None = None
        self.lost = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        transport.write(self.batch)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())
        self.bodies.append(bytes(self._body))
        self._body.clear()
        if len(self.statuses) == self.expected and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def test_pipelined_batch_over_every_transport(backend: str, transport: str) -> None:
    spec = stream_transport(transport)
    batch = (build_request("GET", "/") + build_request("POST", "/echo", body=UPLOAD)
             + build_request("GET", "/stream?1000000") + build_request("GET", "/p/x?y"))
    with Loop(backend) as loop:
        server = spec.serve(http_protocol_factory(make_app(), loop), "127.0.0.1", 0,
                            loop=loop)
        client = HttpClient(batch, 4)
        spec.connect(lambda: client, "127.0.0.1", server.port, loop=loop)
        loop.run_until(lambda: client.lost, timeout=120)
        loop.run_until(lambda: not server.connections, timeout=60)
        server.close()
        loop.run_once()
    assert client.statuses == [200, 200, 200, 200]
    assert client.bodies[0] == b"Hello, World!\n"
    assert hashlib.sha256(client.bodies[1]).digest() == hashlib.sha256(UPLOAD).digest()
    assert client.bodies[2] == pattern(0, 1_000_000)
    assert client.bodies[3] == b"GET /p/x?y"
