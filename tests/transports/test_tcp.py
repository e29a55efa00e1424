"""TCP server/client behaviour against blocking sockets and real tools, on every backend."""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator

import pytest

from muxio.errors import FdLimitError
from muxio.handlers.echo import EchoProtocol
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.server import LoopThread
from muxio.transports import tcp
from tests.processes import wait_until
from tests.tools import require_tool

DEADLINE = 30.0


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE,
             what: str = "condition") -> None:
    """`tests.processes.wait_until` for a loop running in another thread, checked often."""
    wait_until(condition, what, timeout, interval=0.005)


@pytest.fixture
def echo_server(backend: str) -> Iterator[tuple[LoopThread, tcp.TcpServer]]:
    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: tcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop))
        runner.on_close(lambda loop: (server.close(), server.abort_clients()))
        yield runner, server


def raise_fd_limit(minimum: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < minimum:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(minimum, hard), hard))


def echo_roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = bytearray()
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def _writable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([], [sock], [], 0)[1])


def test_many_small_messages(echo_server: tuple[LoopThread, tcp.TcpServer]) -> None:
    _, server = echo_server
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        for i in range(2000):
            message = f"message {i}\n".encode()
            assert echo_roundtrip(sock, message) == message


def test_half_close_flushes_then_closes(echo_server: tuple[LoopThread, tcp.TcpServer]) -> None:
    runner, server = echo_server
    payload = os.urandom(3_000_000)
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := sock.recv(65536):
            got += chunk
    assert bytes(got) == payload
    wait_for(lambda: runner.call(lambda loop: len(server.connections)) == 0,
             what="the server to release the half-closed connection")


def test_slow_consumer_is_paused_and_memory_bounded(
        echo_server: tuple[LoopThread, tcp.TcpServer]) -> None:
    """A client that stops reading: the server stops reading from it, and its buffer stays
    within the high-water mark plus one read."""
    runner, server = echo_server
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        def state(loop: Loop) -> tuple[bool, int, int]:
            transport = next(iter(server.connections))
            _low, high = transport.get_write_buffer_limits()
            return transport.is_reading(), transport.get_write_buffer_size(), high

        wait_for(lambda: runner.call(lambda loop: len(server.connections)) == 1)
        sent = 0
        chunk = b"s" * 65536
        # Write until the server gives up reading from us (its buffer hit the high mark).
        while runner.call(state)[0]:
            assert sent < 1024 * 1024 * 1024, "the server never paused reading"
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                wait_for(lambda: not runner.call(state)[0] or _writable(sock),
                         what="the server to pause reading or drain")
        _reading, buffered, high = runner.call(state)
        assert buffered <= high + tcp.MAX_READ, (buffered, high)
        assert sent > high  # the client really pushed more than the server buffers
        # Now read everything back: the server resumes and all bytes come home.
        sock.setblocking(True)
        got = 0
        sock.sendall(b"")
        while got < sent:
            got += len(sock.recv(1 << 20))
        assert got == sent


def test_peer_reset_is_connection_lost_with_error(backend: str) -> None:
    lost: list[Exception | None] = []

    class Recorder(Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            lost.append(exc)

    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: tcp.serve(Recorder, "127.0.0.1", 0, loop=loop))
        runner.on_close(lambda loop: server.close())
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_for(lambda: runner.call(lambda loop: len(server.connections)) == 1)
        sock.close()  # RST
        wait_for(lambda: bool(lost), what="connection_lost after RST")
        assert isinstance(lost[0], ConnectionResetError) or lost[0] is None
        assert runner.call(lambda loop: len(server.connections)) == 0


def test_connect_refused_is_a_client_error(backend: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        with Loop(backend) as loop:
            future = tcp.connect(Protocol, "127.0.0.1", port, loop=loop)
            loop.run_until(future.done, timeout=DEADLINE)
            with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port}"):
                future.result()


def test_client_connects_and_talks(backend: str) -> None:
    received = bytearray()

    class Client(Protocol):
        def connection_made(self, transport: Transport) -> None:
            transport.write(b"hello over muxio")
            transport.write_eof()

        def data_received(self, data: bytes) -> None:
            received.extend(data)

    with Loop(backend) as loop:
        server = tcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop)
        future = tcp.connect(Client, "127.0.0.1", server.port, loop=loop)
        transport, _ = loop.run_until_complete(future, timeout=DEADLINE)
        loop.run_until(lambda: transport.is_closing() and not server.connections,
                       timeout=DEADLINE)
        assert bytes(received) == b"hello over muxio"
        server.close()
        loop.run_once()


def test_listener_close_keeps_existing_clients(
        echo_server: tuple[LoopThread, tcp.TcpServer]) -> None:
    runner, server = echo_server
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        assert echo_roundtrip(sock, b"before") == b"before"
        port = server.port
        runner.call(lambda loop: server.close())
        assert echo_roundtrip(sock, b"after close") == b"after close"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()


def test_close_clients_closes_everyone(echo_server: tuple[LoopThread, tcp.TcpServer]) -> None:
    runner, server = echo_server
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
             for _ in range(5)]
    try:
        wait_for(lambda: runner.call(lambda loop: len(server.connections)) == 5)
        runner.call(lambda loop: server.close_clients())
        for sock in socks:
            assert sock.recv(10) == b""
    finally:
        for sock in socks:
            sock.close()


def test_burst_of_connects_is_all_accepted(backend: str) -> None:
    """500 connects at once: a listener that accepts once per wakeup (a classic
    edge-triggered bug) would leave most of them in the backlog forever."""
    raise_fd_limit(4096)
    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: tcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop,
                                                    backlog=1024))
        runner.on_close(lambda loop: (server.close(), server.abort_clients()))
        clients = []
        try:
            for _ in range(500):
                sock = socket.socket()
                sock.setblocking(False)
                code = sock.connect_ex(("127.0.0.1", server.port))
                assert code in (0, errno.EINPROGRESS)
                clients.append(sock)
            wait_for(lambda: runner.call(lambda loop: len(server.connections)) == 500,
                     what="all 500 connections to be accepted")
        finally:
            for sock in clients:
                sock.close()
        wait_for(lambda: runner.call(lambda loop: len(server.connections)) == 0)


def test_thousand_concurrent_clients(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """1000 clients at once; select stops at its fd limit with a clear error, no crash."""
    raise_fd_limit(4096)
    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: tcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop,
                                                    backlog=2048))
        runner.on_close(lambda loop: (server.close(), server.abort_clients()))
        limit = runner.loop.poller.capabilities.max_fd
        clients: list[socket.socket] = []
        with caplog.at_level(logging.ERROR, logger="muxio.tcp"):
            try:
                for _ in range(1000):
                    clients.append(socket.create_connection(("127.0.0.1", server.port),
                                                            timeout=DEADLINE))
                echoed = 0
                refused = 0
                for i, sock in enumerate(clients):
                    message = f"client {i}".encode()
                    try:
                        reply = echo_roundtrip(sock, message)
                    except ConnectionError:
                        reply = b""
                    if reply == message:
                        echoed += 1
                    else:
                        assert reply == b"", reply
                        refused += 1
            finally:
                for sock in clients:
                    sock.close()
        if limit is None:
            assert echoed == 1000
        else:
            assert echoed > 300
            assert refused > 0
            assert runner.call(lambda loop: server.refused) == refused
            assert "FD_SETSIZE" in caplog.text and "poll" in caplog.text
        # Still serving after all that.
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
            assert echo_roundtrip(sock, b"still here") == b"still here"


def test_select_client_beyond_fd_limit_is_a_clear_error() -> None:
    raise_fd_limit(4096)
    with Loop("select") as loop:
        server = tcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop)
        filler = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
        try:
            future = tcp.connect(Protocol, "127.0.0.1", server.port, loop=loop)
            with pytest.raises(FdLimitError, match="FD_SETSIZE"):
                loop.run_until_complete(future, timeout=DEADLINE)
        finally:
            for fd in filler:
                os.close(fd)
            server.close()
            server.abort_clients()
            loop.run_once()


def test_accept_pauses_on_emfile_without_spinning(backend: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Out of fds: log once, stop accepting briefly (no busy loop), recover afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: tcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop,
                                                    accept_retry_delay=0.02))
        runner.on_close(lambda loop: (server.close(), server.abort_clients()))
        clients: list[socket.socket] = []
        with caplog.at_level(logging.ERROR, logger="muxio.tcp"):
            try:
                used = max(int(fd) for fd in os.listdir("/proc/self/fd"))
                resource.setrlimit(resource.RLIMIT_NOFILE, (used + 40, hard))
                # Clients eat fds of this process too: 30 of them fill the table.
                for _ in range(30):
                    try:
                        clients.append(socket.create_connection(("127.0.0.1", server.port),
                                                                timeout=DEADLINE))
                    except OSError:
                        break
                wait_for(lambda: runner.call(lambda loop: server.accept_errors) >= 2,
                         what="accept to hit EMFILE")
                polls_at_2 = runner.loop.statistics().polls
                wait_for(lambda: runner.call(lambda loop: server.accept_errors) >= 4)
                polls_at_4 = runner.loop.statistics().polls
                # Two retry periods cost a handful of polls, not a spin of thousands.
                assert polls_at_4 - polls_at_2 < 200
            finally:
                for sock in clients:
                    sock.close()
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert caplog.text.count("pausing accepts") == 1
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
            assert echo_roundtrip(sock, b"recovered") == b"recovered"


def test_no_close_wait_left_behind(echo_server: tuple[LoopThread, tcp.TcpServer]) -> None:
    ss = require_tool("ss", "iproute2")
    runner, server = echo_server
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    for sock in socks:
        assert echo_roundtrip(sock, b"x") == b"x"
        sock.close()
    wait_for(lambda: runner.call(lambda loop: len(server.connections)) == 0)
    result = subprocess.run([ss, "-tanH", "state", "close-wait", f"sport = :{server.port}"],
                            capture_output=True, text=True, check=True, timeout=DEADLINE)
    assert result.stdout.strip() == ""


def test_localhost_serves_ipv4_and_ipv6(backend: str) -> None:
    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: tcp.serve(EchoProtocol, "localhost", 0, loop=loop))
        runner.on_close(lambda loop: (server.close(), server.abort_clients()))
        families = {sock.family for sock in server.sockets}
        assert socket.AF_INET in families
        for host in ("127.0.0.1", "::1"):
            if host == "::1" and socket.AF_INET6 not in families:
                pytest.fail("localhost did not bind ::1 although IPv6 loopback works here")
            with socket.create_connection((host, server.port), timeout=DEADLINE) as sock:
                assert echo_roundtrip(sock, host.encode()) == host.encode()


def test_protocol_exception_closes_only_that_connection(backend: str) -> None:
    class Fragile(EchoProtocol):
        def data_received(self, data: bytes) -> None:
            if data.startswith(b"boom"):
                raise ValueError("bad input")
            super().data_received(data)

    with LoopThread(backend) as runner:
        errors: list[object] = []
        runner.call(lambda loop: loop.set_exception_handler(
            lambda _loop, context: errors.append(context["exception"])))
        server = runner.call(lambda loop: tcp.serve(Fragile, "127.0.0.1", 0, loop=loop))
        runner.on_close(lambda loop: (server.close(), server.abort_clients()))
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as good, \
                socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as bad:
            assert echo_roundtrip(good, b"one") == b"one"
            bad.sendall(b"boom")
            with pytest.raises(ConnectionResetError):  # aborted: RST, as on every transport
                bad.recv(10)
            assert echo_roundtrip(good, b"two") == b"two"
        assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_socat_pipes_a_file_through_echo(echo_server: tuple[LoopThread, tcp.TcpServer],
                                         tmp_path: object) -> None:
    socat = require_tool("socat", "socat")
    _, server = echo_server
    payload = os.urandom(5_000_000)
    result = subprocess.run([socat, "-t", "10", "-", f"TCP:127.0.0.1:{server.port}"],
                            input=payload, capture_output=True, timeout=120, check=True)
    assert result.stdout == payload


def test_nc_pipes_through_echo(echo_server: tuple[LoopThread, tcp.TcpServer]) -> None:
    nc = require_tool("nc", "netcat-openbsd")
    _, server = echo_server
    payload = b"".join(f"line {i}\n".encode() for i in range(20000))
    result = subprocess.run([nc, "-N", "127.0.0.1", str(server.port)], input=payload,
                            capture_output=True, timeout=120, check=True)
    assert result.stdout == payload


class _Collector(Protocol):
    def __init__(self) -> None:
        self.transport: Transport | None = None
        self.received = bytearray()
        self.lost = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def _connected_pair(loop: Loop) -> tuple[_Collector, _Collector, tcp.TcpServer]:
    servers: list[_Collector] = []

    def factory() -> _Collector:
        servers.append(_Collector())
        return servers[-1]

    server = tcp.serve(factory, "127.0.0.1", 0, loop=loop)
    client = _Collector()
    loop.run_until_complete(tcp.connect(lambda: client, "127.0.0.1", server.port, loop=loop),
                            timeout=DEADLINE)
    loop.run_until(lambda: bool(servers), timeout=DEADLINE)
    return client, servers[0], server


def test_writes_of_one_iteration_are_queued_then_sent_together(backend: str) -> None:
    with Loop(backend) as loop:
        client, peer, server = _connected_pair(loop)
        transport = client.transport
        assert transport is not None
        buffer = bytearray(b"first;")
        transport.write(buffer)
        buffer[:] = b"XXXXXX"  # the transport copied it: the caller may reuse its buffer
        transport.write(memoryview(b"second;"))
        transport.write(b"third")
        assert transport.get_write_buffer_size() == len(b"first;second;third")
        loop.run_until(lambda: len(peer.received) >= 18, timeout=DEADLINE)
        assert bytes(peer.received) == b"first;second;third"
        assert transport.get_write_buffer_size() == 0
        transport.close()
        server.close()
        loop.run_until(lambda: client.lost and peer.lost, timeout=DEADLINE)


def test_close_sends_the_queued_writes_first(backend: str) -> None:
    with Loop(backend) as loop:
        client, peer, server = _connected_pair(loop)
        assert client.transport is not None
        client.transport.write(b"queued then closed")
        client.transport.close()
        loop.run_until(lambda: client.lost and peer.lost, timeout=DEADLINE)
        assert bytes(peer.received) == b"queued then closed"
        server.close()


def test_abort_drops_the_queued_writes(backend: str) -> None:
    with Loop(backend) as loop:
        client, peer, server = _connected_pair(loop)
        assert client.transport is not None
        client.transport.write(b"queued then aborted")
        client.transport.abort()
        assert client.transport.get_write_buffer_size() == 0
        loop.run_until(lambda: client.lost and peer.lost, timeout=DEADLINE)
        assert bytes(peer.received) == b""
        server.close()


def test_a_write_over_the_high_water_mark_is_sent_at_once(backend: str) -> None:
    with Loop(backend) as loop:
        client, peer, server = _connected_pair(loop)
        transport = client.transport
        assert transport is not None
        transport.set_write_buffer_limits(high=1024)
        payload = os.urandom(4096)
        transport.write(payload)
        # Sent (or handed to the kernel-full buffer) inside write(), not held to the poll.
        assert transport.get_write_buffer_size() < len(payload)
        loop.run_until(lambda: len(peer.received) >= len(payload), timeout=DEADLINE)
        assert bytes(peer.received) == payload
        transport.close()
        server.close()
        loop.run_until(lambda: client.lost and peer.lost, timeout=DEADLINE)
