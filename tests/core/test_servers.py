"""One close() contract for every server object, on every backend x transport.

`close()` stops accepting (established connections go on) and is idempotent;
`close_clients()` closes them gracefully, `abort_clients()` at once; either may be called
again, or from inside a protocol callback that the closing itself triggers. Once the last
connection is gone, every socket of the server is closed (KCP included: its UDP socket
closes with its last session). `cli/serve.py` relies on exactly this and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from muxio.loop import Loop
from muxio.protocols import DatagramProtocol, Protocol, Transport
from muxio.transports import udp
from muxio.transports.registry import stream_transport

DEADLINE = 20.0


class Echo(Protocol):
    def __init__(self, on_lost: Callable[[], object] | None = None) -> None:
        self.transport: Transport | None = None
        self.on_lost = on_lost
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        if self.on_lost is not None:
            self.on_lost()


class Client(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def open_clients(loop: Loop, transport: str, port: int, count: int) -> list[tuple[Any, Client]]:
    spec = stream_transport(transport)
    pairs = []
    for _ in range(count):
        client = Client()
        future = spec.connect(lambda client=client: client, "127.0.0.1", port, loop=loop)
        client_transport, _ = loop.run_until_complete(future, timeout=DEADLINE)
        client_transport.write(b"hello")
        pairs.append((client_transport, client))
    loop.run_until(lambda: all(client.received == b"hello" for _, client in pairs),
                   timeout=DEADLINE)
    return pairs


@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_close_is_idempotent_and_every_socket_closes(backend: str, transport: str,
                                                     how: str) -> None:
    with Loop(backend) as loop:
        servers: list[Echo] = []
        server = stream_transport(transport).serve(
            lambda: servers.append(Echo()) or servers[-1], "127.0.0.1", 0, loop=loop)
        pairs = open_clients(loop, transport, server.port, 3)
        server.close()
        server.close()
        assert not server.is_serving()
        pairs[0][0].write(b" again")  # established connections go on
        loop.run_until(lambda: pairs[0][1].received == b"hello again", timeout=DEADLINE)
        getattr(server, how)()
        getattr(server, how)()
        loop.run_until(lambda: all(side.lost for side in servers)
                       and all(client.lost for _, client in pairs), timeout=DEADLINE)
        loop.run_until(lambda: all(sock.fileno() == -1 for sock in server.sockets),
                       timeout=DEADLINE)
        assert not server.connections
        server.close()
        getattr(server, how)()


def test_closing_from_inside_the_callbacks_it_triggers(backend: str, transport: str) -> None:
    """Re-entrancy: each connection_lost closes the server and aborts its clients again
    while abort_clients is still iterating over them."""
    with Loop(backend) as loop:
        servers: list[Echo] = []
        server: Any = None

        def reenter() -> None:
            server.close()
            server.abort_clients()

        server = stream_transport(transport).serve(
            lambda: servers.append(Echo(reenter)) or servers[-1], "127.0.0.1", 0, loop=loop)
        pairs = open_clients(loop, transport, server.port, 3)
        server.abort_clients()
        loop.run_until(lambda: all(side.lost for side in servers)
                       and all(client.lost for _, client in pairs), timeout=DEADLINE)
        loop.run_until(lambda: all(sock.fileno() == -1 for sock in server.sockets),
                       timeout=DEADLINE)
        assert all(side.lost == [None] for side in servers)
        assert all(len(client.lost) == 1 and isinstance(client.lost[0], ConnectionResetError)
                   for _, client in pairs)


def test_a_udp_server_closes_once(backend: str) -> None:
    class Quiet(DatagramProtocol):
        def __init__(self) -> None:
            self.lost = 0

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost += 1

    with Loop(backend) as loop:
        protocols: list[Quiet] = []
        server = udp.serve(lambda: protocols.append(Quiet()) or protocols[-1], "127.0.0.1", 0,
                           loop=loop)
        server.close()
        server.close()
        server.abort()
        assert not server.is_serving()
        loop.run_until(lambda: all(protocol.lost for protocol in protocols), timeout=DEADLINE)
        for _ in range(3):
            loop.run_once(0)
        assert [protocol.lost for protocol in protocols] == [1]
        assert all(sock.fileno() == -1 for sock in server.sockets)
