"""tls.serve / tls.connect over TCP: errors of the inner connect, cancellation, the
server's counters, and close_clients sending close_notify."""

from __future__ import annotations

import socket

import pytest

from muxio.errors import TlsHandshakeError
from muxio.loop import Loop
from muxio.testing.conformance import RecordingProtocol
from muxio.transports import tls
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
