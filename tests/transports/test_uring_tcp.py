"""Completion-mode TCP (muxio.transports.uring_tcp) through the stream conformance suite,
on the uring backend (on any other backend its serve/connect are plain TCP, which
test_conformance.py covers), plus what only completion mode has."""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Callable, Iterator

import pytest

from muxio.loop import Loop
from muxio.pollers.uring_poller import unavailable_reason
from muxio.protocols import Protocol, Transport
from muxio.testing.conformance import (
    Cleanup,
    RecordingProtocol,
    StreamPair,
    StreamTransportConformance,
)
from muxio.testing.stress import make_scenario, run_scenario
from muxio.transports import tcp, uring_port, uring_tcp

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None and os.environ.get("CI") != "true",
                                reason=f"io_uring is not usable here: {REASON}")


class TestUringTcpConformance(StreamTransportConformance):
    @pytest.fixture
    def pair_factory(self) -> Iterator[Callable[..., StreamPair]]:
        """The suite's own fixture, on a loop of the uring backend only."""
        with self.pairs_on_backend("uring") as open_pair:
            yield open_pair

    def make_pair(self, loop: Loop, client: Protocol,
                  server: Protocol) -> tuple[Transport, Transport, Cleanup]:
        listener = uring_tcp.serve(lambda: server, "127.0.0.1", 0, loop=loop)
        assert isinstance(listener, uring_tcp.UringTcpServer)
        connected = uring_tcp.connect(lambda: client, "127.0.0.1", listener.port, loop=loop)
        client_transport, _ = loop.run_until_complete(connected, timeout=self.timeout)
        loop.run_until(lambda: bool(listener.connections), timeout=self.timeout)
        server_transport = next(iter(listener.connections))
        assert isinstance(client_transport, uring_tcp.UringTcpTransport)

        def cleanup() -> None:
            listener.close()
            listener.abort_clients()
            client_transport.abort()

        return client_transport, server_transport, cleanup


def test_other_backends_get_plain_tcp() -> None:
    with Loop("epoll") as loop:
        server = uring_tcp.serve(RecordingProtocol, "127.0.0.1", 0, loop=loop)
        assert isinstance(server, tcp.TcpServer)
        server.close()


def test_many_connections_echo_through_one_ring() -> None:
    """50 clients, each a blocking socket, against a completion-mode echo server."""

    class Echo(Protocol):
        def connection_made(self, transport: Transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    with Loop("uring") as loop:
        server = uring_tcp.serve(Echo, "127.0.0.1", 0, loop=loop)
        clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
        try:
            for index, client in enumerate(clients):
                client.sendall(f"hello {index}".encode())
            answers: dict[int, bytes] = {}
            for client in clients:
                client.setblocking(False)

            def all_answered() -> bool:
                for index, client in enumerate(clients):
                    try:
                        answers[index] = answers.get(index, b"") + client.recv(100)
                    except BlockingIOError:
                        pass
                return all(answers.get(i) == f"hello {i}".encode()
                           for i in range(len(clients)))

            loop.run_until(all_answered, timeout=20)
            assert len(server.connections) == 50
        finally:
            for client in clients:
                client.close()
            loop.run_until(lambda: not server.connections, timeout=20)
            server.close()


def test_data_and_eof_that_arrive_while_paused_come_in_order_on_resume() -> None:
    with Loop("uring") as loop:
        made: list[RecordingProtocol] = []

        def factory() -> RecordingProtocol:
            made.append(RecordingProtocol(keep_open_on_eof=True))
            return made[-1]

        server = uring_tcp.serve(factory, "127.0.0.1", 0, loop=loop)
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            loop.run_until(lambda: bool(made), timeout=20)
            transport = made[0].transport
            assert transport is not None
            transport.pause_reading()
            client.sendall(b"first ")
            client.sendall(b"second")
            client.shutdown(socket.SHUT_WR)
            for _ in range(20):
                loop.run_once(0.005)
            assert made[0].events == ["made"]
            transport.resume_reading()
            loop.run_until(lambda: "eof" in made[0].events, timeout=20)
            assert bytes(made[0].received) == b"first second"
            assert made[0].events == ["made", "data", "eof"]
            transport.close()
            loop.run_until(lambda: made[0].lost, timeout=20)
        server.close()


def test_accept_pauses_on_emfile_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    """Out of fds: the multishot ACCEPT fails, is logged once, re-armed after the delay,
    and the connections waiting in the backlog are accepted once fds are free again."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with Loop("uring") as loop:
        server = uring_tcp.serve(RecordingProtocol, "127.0.0.1", 0, loop=loop,
                                 accept_retry_delay=0.02)
        assert isinstance(server, uring_tcp.UringTcpServer)
        clients = [socket.socket() for _ in range(5)]
        hog: list[int] = []
        with caplog.at_level(logging.ERROR, logger="muxio.uring_tcp"):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
                while True:  # every fd taken: accept has none left
                    try:
                        hog.append(os.open(os.devnull, os.O_RDONLY))
                    except OSError:
                        break
                for client in clients:
                    client.connect(("127.0.0.1", server.port))
                loop.run_until(lambda: server.accept_errors >= 3, timeout=20)
                assert not server.connections
            finally:
                for fd in hog:
                    os.close(fd)
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert caplog.text.count("pausing accepts") == 1
        loop.run_until(lambda: len(server.connections) == len(clients), timeout=20)
        for client in clients:
            client.close()
        loop.run_until(lambda: not server.connections, timeout=20)
        server.close()
        for _ in range(5):
            loop.run_once(0)


def test_connections_accepted_but_not_yet_seen_at_loop_close_do_not_leak() -> None:
    before = set(os.listdir("/proc/self/fd"))
    loop = Loop("uring")
    server = uring_tcp.serve(RecordingProtocol, "127.0.0.1", 0, loop=loop)
    loop.run_once(0)  # the multishot ACCEPT reaches the kernel
    clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    server.close()
    loop.close()  # the accept CQEs were never dispatched: their fds must not stay open
    for client in clients:
        client.close()
    assert set(os.listdir("/proc/self/fd")) - before == set()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("buffers", [(8, 512), (256, 16 * 1024)])
def test_completion_mode_matches_the_stress_model(seed: int, buffers: tuple[int, int],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The cross-backend differential stress scenarios, over completion-mode TCP. With 8
    buffers of 512 bytes the multishot RECV runs dry all the time (-ENOBUFS, re-armed)."""
    monkeypatch.setattr(uring_port, "BUFFERS", buffers[0])
    monkeypatch.setattr(uring_port, "BUFFER_SIZE", buffers[1])
    scenario = make_scenario(seed, max_bytes=200_000)
    with Loop("uring") as loop:
        result = run_scenario(scenario, loop=loop, serve=uring_tcp.serve,
                              connect=uring_tcp.connect, transport_name="tcp")
    assert result.problems == [], "\n".join(result.problems)


class Echo(Protocol):
    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Collector(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data


def test_the_uring_completion_backend_hands_tcp_to_completion_mode() -> None:
    """`--backend uring-completion`: tcp.serve/connect (what every service and handler
    uses) run in completion mode, chosen by the backend's capability alone."""
    with Loop("uring-completion") as loop:
        server = tcp.serve(Echo, "127.0.0.1", 0, loop=loop)
        assert isinstance(server, uring_tcp.UringTcpServer)
        client = Collector()
        transport, _ = loop.run_until_complete(
            tcp.connect(lambda: client, "127.0.0.1", server.port, loop=loop), timeout=20)
        assert isinstance(transport, uring_tcp.UringTcpTransport)
        transport.write(b"through the ring")
        loop.run_until(lambda: client.received == b"through the ring", timeout=20)
        transport.close()
        server.close()
        server.abort_clients()
        for _ in range(5):
            loop.run_once(0)
    with Loop("uring") as loop:
        server = tcp.serve(Echo, "127.0.0.1", 0, loop=loop)
        assert isinstance(server, tcp.TcpServer)  # readiness mode stays the default
        server.close()
