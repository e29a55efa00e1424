"""UDP transport: datagrams both ways, bursts, ICMP errors, flow control, on every backend."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from muxio.loop import Loop
from muxio.protocols import Address, DatagramProtocol, DatagramTransport
from muxio.testing.server import LoopThread
from muxio.transports import udp

DEADLINE = 30.0


class Recorder(DatagramProtocol):
    """Records every callback; `wait_for(n)` blocks the test thread until n datagrams."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.transport: DatagramTransport | None = None
        self.datagrams: list[tuple[bytes, Address]] = []
        self.errors: list[Exception] = []
        self.lost: list[Exception | None] = []
        self.paused = threading.Event()
        self.resumed = threading.Event()
        self.lost_event = threading.Event()
        self.error_event = threading.Event()
        self._condition = threading.Condition()

    def connection_made(self, transport: DatagramTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Address) -> None:
        with self._condition:
            self.datagrams.append((data, addr))
            self._condition.notify_all()
        if self.echo:
            assert self.transport is not None
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        self.error_event.set()

    def pause_writing(self) -> None:
        self.paused.set()

    def resume_writing(self) -> None:
        self.resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        self.lost_event.set()

    def wait_for(self, count: int, timeout: float = DEADLINE) -> None:
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.datagrams) >= count, timeout):
                pytest.fail(f"received {len(self.datagrams)} of {count} datagrams "
                            f"within {timeout} s")


@pytest.fixture
def runner(backend: str) -> Iterator[LoopThread]:
    with LoopThread(backend) as loop_thread:
        yield loop_thread


def client_socket(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(DEADLINE)
    return sock


def test_echo_over_both_loopbacks_on_one_port(runner: LoopThread) -> None:
    protocols: list[Recorder] = []

    def factory() -> Recorder:
        protocols.append(Recorder(echo=True))
        return protocols[-1]

    server = runner.call(lambda loop: udp.serve(factory, "localhost", 0, loop=loop))
    runner.on_close(lambda loop: server.close())
    families = {sock.family for sock in server.sockets}
    assert socket.AF_INET in families
    assert {address[1] for address in server.addresses} == {server.port}
    targets = [("127.0.0.1", socket.AF_INET)]
    if socket.AF_INET6 in families:
        targets.append(("::1", socket.AF_INET6))
    for host, family in targets:
        with client_socket(family) as client:
            for index in range(50):
                payload = f"{host} datagram {index}".encode()
                client.sendto(payload, (host, server.port))
                data, source = client.recvfrom(65535)
                assert data == payload
                assert source[1] == server.port
    assert sum(len(protocol.datagrams) for protocol in protocols) == 50 * len(targets)


def test_largest_datagram_arrives_whole(runner: LoopThread) -> None:
    recorder = Recorder(echo=True)
    transport, _ = runner.call(lambda loop: udp.create_endpoint(
        lambda: recorder, ("127.0.0.1", 0), loop=loop))
    runner.on_close(lambda loop: transport.close())
    port = transport.get_extra_info("sockname")[1]
    payload = os.urandom(65507)  # the IPv4 maximum
    with client_socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.sendto(payload, ("127.0.0.1", port))
        assert client.recvfrom(65535)[0] == payload


def test_burst_queued_while_the_loop_was_busy_is_all_read(runner: LoopThread) -> None:
    """More datagrams than one wakeup reads: edge-triggered backends must continue."""
    recorder = Recorder()
    transport, _ = runner.call(lambda loop: udp.create_endpoint(
        lambda: recorder, ("127.0.0.1", 0), loop=loop))
    runner.on_close(lambda loop: transport.close())
    port = transport.get_extra_info("sockname")[1]
    release = threading.Event()
    blocked = threading.Event()

    def block(loop: Loop) -> None:
        blocked.set()
        release.wait(DEADLINE)

    runner.loop.call_soon_threadsafe(block, runner.loop)
    assert blocked.wait(DEADLINE)
    count = 3000
    with client_socket() as client:
        for index in range(count):
            client.sendto(index.to_bytes(4, "big"), ("127.0.0.1", port))
    release.set()
    recorder.wait_for(count)
    assert [int.from_bytes(data, "big") for data, _ in recorder.datagrams] == list(range(count))


def test_receive_buffer_is_sized_for_bursts(runner: LoopThread,
                                            caplog: pytest.LogCaptureFixture) -> None:
    transport, _ = runner.call(lambda loop: udp.create_endpoint(
        Recorder, ("127.0.0.1", 0), loop=loop))
    runner.on_close(lambda loop: transport.close())
    sock: socket.socket = transport.get_extra_info("socket")
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    with open("/proc/sys/net/core/rmem_max") as handle:
        rmem_max = int(handle.read())
    # What we asked for (as root, past rmem_max via SO_RCVBUFFORCE), or at least the
    # kernel's cap, far above the ~208 KiB default.
    assert granted >= min(udp.DEFAULT_RCVBUF, rmem_max)
    if granted < udp.DEFAULT_RCVBUF:
        # Clamped: a warning names the sysctl to raise (checked on a fresh socket).
        udp._rcvbuf_warned = False
        with caplog.at_level(logging.WARNING, "muxio.udp"), \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            udp.size_receive_buffer(probe, udp.DEFAULT_RCVBUF)
        assert "net.core.rmem_max" in caplog.text


def test_icmp_port_unreachable_goes_to_error_received(runner: LoopThread) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    recorder = Recorder()
    transport, _ = runner.call(lambda loop: udp.create_endpoint(
        lambda: recorder, remote_addr=("127.0.0.1", closed_port), loop=loop))
    runner.on_close(lambda loop: transport.close())
    assert transport.get_extra_info("peername") == ("127.0.0.1", closed_port)
    runner.call(lambda loop: transport.sendto(b"anyone?"))
    assert recorder.error_event.wait(DEADLINE)
    assert isinstance(recorder.errors[0], ConnectionRefusedError)
    assert not runner.call(lambda loop: transport.is_closing())  # the endpoint stays open
    # ...and still works: a peer appearing on that port gets the next datagram.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.settimeout(DEADLINE)
        try:
            peer.bind(("127.0.0.1", closed_port))
        except OSError as exc:
            pytest.skip(f"port {closed_port} was taken by another process meanwhile: {exc}")
        runner.call(lambda loop: transport.sendto(b"now?"))
        assert peer.recvfrom(100)[0] == b"now?"


def test_sendto_without_address_needs_a_connected_endpoint(runner: LoopThread) -> None:
    transport, _ = runner.call(lambda loop: udp.create_endpoint(
        Recorder, ("127.0.0.1", 0), loop=loop))
    runner.on_close(lambda loop: transport.close())
    with pytest.raises(ValueError, match="not connected"):
        runner.call(lambda loop: transport.sendto(b"where to?"))


def test_send_queue_flow_control_and_close_flushes(runner: LoopThread) -> None:
    """A full kernel queue (an AF_UNIX datagram peer that does not read) makes sendto
    queue datagrams: pause_writing above the high-water mark, resume_writing once the
    peer reads, every datagram delivered in order, and close() sends the rest first."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    recorder = Recorder()
    with peer:
        peer.settimeout(DEADLINE)
        transport = runner.call(lambda loop: udp.from_socket(recorder, ours, loop=loop))
        runner.call(lambda loop: transport.set_write_buffer_limits(high=8000))
        payloads = [index.to_bytes(4, "big") * 250 for index in range(200)]

        def send_all(loop: Loop) -> int:
            for payload in payloads:
                transport.sendto(payload)
            return transport.get_write_buffer_size()

        queued = runner.call(send_all)
        assert queued > 8000
        assert recorder.paused.is_set()
        assert not recorder.resumed.is_set()
        runner.call(lambda loop: transport.close())  # must still send what is queued
        received = [peer.recv(2000) for _ in payloads]
        assert received == payloads
        assert recorder.resumed.wait(DEADLINE)
        assert recorder.lost_event.wait(DEADLINE)
    assert recorder.lost == [None]
    assert ours.fileno() == -1


def test_abort_drops_the_queue(runner: LoopThread) -> None:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    recorder = Recorder()
    with peer:
        transport = runner.call(lambda loop: udp.from_socket(recorder, ours, loop=loop))

        def fill_then_abort(loop: Loop) -> int:
            for _ in range(100):
                transport.sendto(b"x" * 1000)
            queued = transport.get_write_buffer_size()
            transport.abort()
            return queued

        assert runner.call(fill_then_abort) > 0
        assert recorder.lost_event.wait(DEADLINE)
        assert runner.call(lambda loop: transport.get_write_buffer_size()) == 0
    assert recorder.lost == [None]


def test_a_failing_protocol_callback_is_reported_and_the_endpoint_goes_on(
        runner: LoopThread) -> None:
    failures: list[dict[str, Any]] = []
    runner.call(lambda loop: loop.set_exception_handler(
        lambda _loop, context: failures.append(context)))

    class Fragile(Recorder):
        def datagram_received(self, data: bytes, addr: Address) -> None:
            if data == b"boom":
                raise RuntimeError("handler bug")
            super().datagram_received(data, addr)

    recorder = Fragile(echo=True)
    transport, _ = runner.call(lambda loop: udp.create_endpoint(
        lambda: recorder, ("127.0.0.1", 0), loop=loop))
    runner.on_close(lambda loop: transport.close())
    port = transport.get_extra_info("sockname")[1]
    with client_socket() as client:
        client.sendto(b"boom", ("127.0.0.1", port))
        client.sendto(b"fine", ("127.0.0.1", port))
        assert client.recvfrom(100)[0] == b"fine"
    assert len(failures) == 1
    assert isinstance(failures[0]["exception"], RuntimeError)


def test_pause_and_resume_reading(runner: LoopThread) -> None:
    recorder = Recorder()
    transport, _ = runner.call(lambda loop: udp.create_endpoint(
        lambda: recorder, ("127.0.0.1", 0), loop=loop))
    runner.on_close(lambda loop: transport.close())
    port = transport.get_extra_info("sockname")[1]
    runner.call(lambda loop: transport.pause_reading())
    assert not runner.call(lambda loop: transport.is_reading())
    with client_socket() as client:
        for index in range(10):
            client.sendto(bytes([index]), ("127.0.0.1", port))
        # Datagrams wait in the kernel while paused: a loop round trip delivers nothing.
        runner.drain()
        assert recorder.datagrams == []
        runner.call(lambda loop: transport.resume_reading())
        recorder.wait_for(10)
    assert [data for data, _ in recorder.datagrams] == [bytes([index]) for index in range(10)]


def test_close_runs_connection_lost_once_and_releases_the_socket(runner: LoopThread) -> None:
    recorder = Recorder()
    transport, _ = runner.call(lambda loop: udp.create_endpoint(
        lambda: recorder, ("127.0.0.1", 0), loop=loop))
    sock: socket.socket = transport.get_extra_info("socket")
    closers: list[Callable[[], None]] = [transport.close, transport.close, transport.abort]
    for close in closers:
        runner.call(lambda loop, close=close: close())  # type: ignore[misc]
    assert recorder.lost_event.wait(DEADLINE)
    runner.drain()
    assert recorder.lost == [None]
    assert sock.fileno() == -1
    runner.call(lambda loop: transport.sendto(b"ignored", ("127.0.0.1", 9)))  # no error
