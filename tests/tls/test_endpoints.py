"""tls.serve / tls.connect over TCP: errors of the inner connect, cancellation, the
server's counters, and close_clients sending close_notify."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from muxio.errors import TlsHandshakeError
from muxio.loop import Loop
from muxio.testing.conformance import RecordingProtocol
from muxio.transports import tls
from muxio.transports.registry import stream_transport
from tests.tls.harness import DEADLINE, Pki


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connect_refused_is_the_inner_error(pki: Pki) -> None:
    with Loop() as loop:
        future = tls.connect(RecordingProtocol, "127.0.0.1", closed_port(), loop=loop,
                             context=pki.client_context())
        with pytest.raises(ConnectionRefusedError):
            loop.run_until_complete(future, timeout=DEADLINE)


def test_server_counts_handshakes_and_close_clients_sends_close_notify(pki: Pki) -> None:
    made: list[RecordingProtocol] = []

    def factory() -> RecordingProtocol:
        made.append(RecordingProtocol())
        return made[-1]

    with Loop() as loop:
        server = tls.serve(factory, "127.0.0.1", 0, loop=loop, context=pki.server_context())
        try:
            assert server.is_serving() and server.sockets and "TlsServer" in repr(server)
            clients = [RecordingProtocol() for _ in range(3)]
            for client in clients:
                future = tls.connect(lambda client=client: client, "localhost", server.port,
                                     loop=loop, context=pki.client_context())
                loop.run_until_complete(future, timeout=DEADLINE)
            bad = tls.connect(RecordingProtocol, "localhost", server.port, loop=loop,
                              context=tls.client_context(cafile=str(pki.rogue_ca)))
            with pytest.raises(TlsHandshakeError, match="certificate verify failed"):
                loop.run_until_complete(bad, timeout=DEADLINE)
            loop.run_until(lambda: server.handshake_failures == 1 and len(made) == 3,
                           timeout=DEADLINE)
            assert server.handshakes == 3 and len(server.connections) == 3
            assert server.handshaking == 0
            server.close_clients()
            loop.run_until(lambda: all(client.lost for client in clients), timeout=DEADLINE)
            for client in clients:
                assert client.events == ["made", "eof", "lost"]  # close_notify, then close
                assert client.lost_with == [None]
            loop.run_until(lambda: not server.sessions, timeout=DEADLINE)
        finally:
            server.shutdown()
            for _ in range(3):
                loop.run_once(0)


def test_cancelling_connect_aborts_the_handshake(pki: Pki) -> None:
    with Loop() as loop, socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts (in the kernel) but never answers the ClientHello
        future = tls.connect(RecordingProtocol, "127.0.0.1", silent.getsockname()[1],
                             loop=loop, context=pki.client_context())
        for _ in range(20):
            loop.run_once(0.01)
        assert not future.done()
        future.cancel()
        for _ in range(3):
            loop.run_once(0)  # the done callback aborts the connection
        conn, _ = silent.accept()
        with conn:
            conn.settimeout(DEADLINE)
            try:
                while conn.recv(65536):
                    pass  # the ClientHello, then EOF or a reset
            except ConnectionResetError:
                pass


class Echo(RecordingProtocol):
    def __init__(self, on_lost: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        assert self.transport is not None
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost()


def open_clients(loop: Loop, pki: Pki, over: str, port: int,
                 count: int) -> list[tuple[Any, RecordingProtocol]]:
    pairs = []
    for _ in range(count):
        client = RecordingProtocol()
        future = tls.connect(lambda client=client: client, "localhost", port, loop=loop,
                             context=pki.client_context(),
                             over=stream_transport(over).connect)
        client_transport, _ = loop.run_until_complete(future, timeout=DEADLINE)
        client_transport.write(b"hello")
        pairs.append((client_transport, client))
    loop.run_until(lambda: all(client.received == b"hello" for _, client in pairs),
                   timeout=DEADLINE)
    return pairs


@pytest.mark.parametrize("over", ["tcp", "kcp"])
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_the_server_close_contract_holds_over_tls(pki: Pki, over: str, how: str) -> None:
    """As tests/core/test_servers.py for TCP and KCP: close() stops accepting and is
    idempotent, connections go on, close_clients/abort_clients end them (twice is fine),
    and every socket is closed once the last connection is gone."""
    with Loop() as loop:
        servers: list[Echo] = []
        server = tls.serve(lambda: servers.append(Echo()) or servers[-1], "127.0.0.1", 0,
                           loop=loop, context=pki.server_context(),
                           over=stream_transport(over).serve)
        pairs = open_clients(loop, pki, over, server.port, 3)
        server.close()
        server.close()
        assert not server.is_serving()
        pairs[0][0].write(b" again")
        loop.run_until(lambda: pairs[0][1].received == b"hello again", timeout=DEADLINE)
        getattr(server, how)()
        getattr(server, how)()
        loop.run_until(lambda: all(side.lost for side in servers)
                       and all(client.lost for _, client in pairs), timeout=DEADLINE)
        loop.run_until(lambda: all(sock.fileno() == -1 for sock in server.sockets),
                       timeout=DEADLINE)
        assert not server.connections and not server.sessions
        assert all(side.lost_with == [None] for side in servers)
        server.close()
        getattr(server, how)()


@pytest.mark.parametrize("over", ["tcp", "kcp"])
def test_closing_the_server_from_the_callbacks_it_triggers(pki: Pki, over: str) -> None:
    with Loop() as loop:
        servers: list[Echo] = []
        server: Any = None

        def reenter() -> None:
            server.close()
            server.abort_clients()

        server = tls.serve(lambda: servers.append(Echo(reenter)) or servers[-1], "127.0.0.1",
                           0, loop=loop, context=pki.server_context(),
                           over=stream_transport(over).serve)
        pairs = open_clients(loop, pki, over, server.port, 3)
        server.abort_clients()
        loop.run_until(lambda: all(side.lost for side in servers)
                       and all(client.lost for _, client in pairs), timeout=DEADLINE)
        loop.run_until(lambda: all(sock.fileno() == -1 for sock in server.sockets),
                       timeout=DEADLINE)
        assert all(side.lost_with == [None] for side in servers)
        assert all(len(client.lost_with) == 1
                   and isinstance(client.lost_with[0], ConnectionResetError)
                   for _, client in pairs)
