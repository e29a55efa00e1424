"""TLS over KCP on a lossy link: 20 MB arrive intact and in order while one datagram in
ten is dropped (deterministically: a seeded generator decides, on both sides, in
KcpEndpoint.send_datagram), and HTTPS over KCP with the unchanged HTTP handler."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from muxio.handlers.http import hello_app, http_protocol_factory
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports import tls
from muxio.transports.kcp import transport as kcp
from tests.tls.harness import DEADLINE, BulkSender, Pki, Sink, pattern_digest

SIZE = 20 * 1024 * 1024
LOSS = 0.10


class LossyLink:
    """Drops each outgoing KCP datagram with probability `loss`, from a seeded generator."""

    def __init__(self, loss: float, seed: int) -> None:
        self.loss = loss
        self.random = random.Random(seed)
        self.sent = 0
        self.dropped = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        send = kcp.KcpEndpoint.send_datagram
        link = self

        def lossy_send(endpoint: kcp.KcpEndpoint, datagram: bytes, address: Any) -> None:
            link.sent += 1
            if link.random.random() < link.loss:
                link.dropped += 1
                return
            send(endpoint, datagram, address)

        monkeypatch.setattr(kcp.KcpEndpoint, "send_datagram", lossy_send)


@pytest.fixture
def lossy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LossyLink]:
    link = LossyLink(LOSS, seed=20261206)
    link.install(monkeypatch)
    yield link


def test_20_mb_over_tls_over_kcp_at_10_percent_loss(pki: Pki, lossy: LossyLink) -> None:
    sink = Sink()
    sender = BulkSender(SIZE)
    with Loop("epoll") as loop:
        server = tls.serve(lambda: sink, "127.0.0.1", 0, loop=loop,
                           context=pki.server_context(), over=kcp.serve,
                           handshake_timeout=DEADLINE)
        try:
            connected = tls.connect(lambda: sender, "localhost", server.port, loop=loop,
                                    context=pki.client_context(), over=kcp.connect,
                                    handshake_timeout=DEADLINE)
            transport, _ = loop.run_until_complete(connected, timeout=DEADLINE)
            loop.run_until(lambda: sink.eof, timeout=120.0)
            # The sender's close_notify came after its 20 MB; the receiver answers with
            # its own and is done. (The sender's KCP session may still be waiting for the
            # ACK of its last segment: see docs/tls.md, "TLS over KCP".)
            loop.run_until(lambda: bool(sink.lost), timeout=DEADLINE)
        finally:
            server.shutdown()
            if sender.transport is not None:
                sender.transport.abort()
            for _ in range(3):
                loop.run_once(0)
    assert sink.size == SIZE
    assert sink.digest.hexdigest() == pattern_digest(SIZE)
    assert sink.lost == [None]
    assert transport.get_extra_info("transport") == "tls+kcp"
    assert lossy.dropped > 0.08 * lossy.sent  # the link really was lossy


class HttpsOverKcpClient(Protocol):
    """Two keep-alive GETs over one TLS-over-KCP connection."""

    def __init__(self) -> None:
        self.transport: Transport | None = None
        self.received = b""

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)

    def data_received(self, data: bytes) -> None:
        self.received += data


def test_https_over_kcp_with_the_unchanged_handler(backend: str, pki: Pki,
                                                   lossy: LossyLink) -> None:
    client = HttpsOverKcpClient()
    with Loop(backend) as loop:
        server = tls.serve(http_protocol_factory(hello_app(), loop), "127.0.0.1", 0,
                           loop=loop, context=pki.server_context(alpn=("http/1.1",)),
                           over=kcp.serve)
        try:
            connected = tls.connect(lambda: client, "localhost", server.port, loop=loop,
                                    context=pki.client_context(alpn=("http/1.1",)),
                                    over=kcp.connect)
            transport, _ = loop.run_until_complete(connected, timeout=DEADLINE)
            loop.run_until(lambda: client.received.count(b"Hello, World!\n") == 2,
                           timeout=DEADLINE)
            assert transport.get_extra_info("alpn_protocol") == "http/1.1"
            assert transport.get_extra_info("transport") == "tls+kcp"
            assert client.received.startswith(b"HTTP/1.1 200 OK\r\n")
            transport.close()
            loop.run_until(lambda: not server.sessions, timeout=DEADLINE)
        finally:
            server.shutdown()
            # The client's KCP session may still wait for the ACK of its EOF (the lossy
            # link may drop it, and a stopped server does not linger): release it now.
            if client.transport is not None:
                client.transport.abort()
            for _ in range(3):
                loop.run_once(0)
