"""The echo handler over every transport x backend, driven by muxio's own client."""

from __future__ import annotations

import hashlib
import os
import random

from muxio.handlers.echo import EchoProtocol
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports.registry import stream_transport

DEADLINE = 60.0


class StreamingClient(Protocol):
    """Sends a payload in random-sized writes, respecting pause_writing; hashes replies."""

    def __init__(self, payload: bytes, seed: int) -> None:
        self.payload = memoryview(payload)
        self.offset = 0
        self.random = random.Random(seed)
        self.transport: Transport | None = None
        self.paused = False
        self.received = 0
        self.digest = hashlib.sha256()
        self.lost = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.push()

    def push(self) -> None:
        assert self.transport is not None
        while not self.paused and self.offset < len(self.payload):
            size = self.random.choice((1, 100, 1500, 65536, 300_000))
            self.transport.write(self.payload[self.offset:self.offset + size])
            self.offset += size
        if self.offset >= len(self.payload) and not self.paused:
            self.transport.write_eof()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.push()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.digest.update(data)

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def run_echo(backend: str, transport: str, payloads: list[bytes]) -> list[StreamingClient]:
    spec = stream_transport(transport)
    with Loop(backend) as loop:
        server = spec.serve(EchoProtocol, "127.0.0.1", 0, loop=loop)
        clients = [StreamingClient(payload, seed) for seed, payload in enumerate(payloads)]
        for client in clients:
            spec.connect(lambda client=client: client, "127.0.0.1", server.port, loop=loop)
        loop.run_until(lambda: all(client.lost for client in clients), timeout=DEADLINE)
        loop.run_until(lambda: not server.connections, timeout=DEADLINE)
        server.close()
        loop.run_once()
    return clients


def test_20mb_random_content_round_trips(backend: str, transport: str) -> None:
    payload = os.urandom(20 * 1024 * 1024)
    [client] = run_echo(backend, transport, [payload])
    assert client.received == len(payload)
    assert client.digest.digest() == hashlib.sha256(payload).digest()


def test_many_clients_many_small_messages(backend: str, transport: str) -> None:
    payloads = [b"".join(f"{c}:{i};".encode() for i in range(3000)) for c in range(50)]
    clients = run_echo(backend, transport, payloads)
    for client, payload in zip(clients, payloads, strict=True):
        assert client.received == len(payload)
        assert client.digest.digest() == hashlib.sha256(payload).digest()
