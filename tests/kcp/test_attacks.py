"""KCP's session layer under attack (issue 13), scaled down to run in seconds.

Each test plays one attack from a raw UDP socket against a muxio KCP echo server on two
backends, then checks that a good client is still served and that what the attacker
made the server hold or do (sessions, buffered bytes, timer wake-ups, bytes sent back)
stays under a stated bound. Time-dependent attacks run on `FakeClock`, so "20 s of
retransmissions" or "60 s of timers" cost no real time. The long versions, with
figures, are in benchmarks/attacks_kcp.py.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator

import pytest

from muxio.handlers.echo import EchoProtocol
from muxio.loop import Loop
from muxio.pollers.registry import default_registry
from muxio.testing import FakeClock
from muxio.testing.conformance import RecordingProtocol
from muxio.transports.kcp import transport as kcp
from muxio.transports.kcp.core import FAST, Kcp

HEADER = struct.Struct("<IBBHIIII")
PUSH, ACK, WASK = 81, 82, 83
DEADLINE = 10.0
ATTACK_BACKENDS = [name for name in ("epoll", "poll")
                   if name in default_registry().matrix_names()]

pytestmark = pytest.mark.parametrize("attack_backend", ATTACK_BACKENDS)


def raw(address: str = "127.0.0.1") -> socket.socket:
    """An attacker's ordinary UDP socket (non-blocking, bound to a loopback address)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> list[bytes]:
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(65535))
        except BlockingIOError:
            return datagrams


def echo_round_trip(loop: Loop, port: int, message: bytes = b"good client") -> None:
    """A good client connects, is echoed `message`, and closes."""
    client = RecordingProtocol()
    transport, _ = loop.run_until_complete(
        kcp.connect(lambda: client, "127.0.0.1", port, loop=loop), timeout=DEADLINE)
    transport.write(message)
    loop.run_until(lambda: bytes(client.received) == message, timeout=DEADLINE)
    transport.abort()
    loop.run_until(lambda: bool(client.lost_with), timeout=DEADLINE)


@pytest.fixture
def stop_servers() -> Iterator[Callable[[Loop, kcp.KcpServer], None]]:
    started: list[tuple[Loop, kcp.KcpServer]] = []
    yield lambda loop, server: started.append((loop, server))
    for loop, server in started:
        if not loop.is_closed():
            server.close()
            server.abort_clients()
            loop.run_once(0)


def test_unproven_flood_does_not_lock_out_a_good_client(
        attack_backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """10x the table size of one-datagram openings (WASK and PUSH sn 0, a fresh conv each)
    from one socket: the table stays at its cap, refusals are logged at most once a second,
    and a good client gets in (evicting an unproven session) and is served."""
    caplog.set_level(logging.WARNING, "muxio.kcp")
    with Loop(attack_backend) as loop, raw() as attacker:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop, max_sessions=64)
        endpoint = server.endpoints[0]
        target = ("127.0.0.1", server.port)
        for conv in range(1, 641):
            command = WASK if conv % 2 else PUSH
            attacker.sendto(HEADER.pack(conv, command, 0, 128, 0, 0, 0, 0), target)
            if conv % 64 == 0:  # let the server read before its socket buffer fills
                loop.run_until(lambda: not _readable(endpoint.sock), timeout=DEADLINE)
        loop.run_until(lambda: not _readable(endpoint.sock), timeout=DEADLINE)
        assert len(endpoint.sessions) <= 64
        echo_round_trip(loop, server.port)
        # the attack goes on after the good client is in: a proven session is never evicted
        client = RecordingProtocol()
        transport, _ = loop.run_until_complete(
            kcp.connect(lambda: client, "127.0.0.1", server.port, loop=loop), timeout=DEADLINE)
        transport.write(b"first")
        loop.run_until(lambda: bytes(client.received) == b"first", timeout=DEADLINE)
        for conv in range(1000, 1640):
            attacker.sendto(HEADER.pack(conv, WASK, 0, 128, 0, 0, 0, 0), target)
            if conv % 64 == 0:
                loop.run_until(lambda: not _readable(endpoint.sock), timeout=DEADLINE)
        transport.write(b" second")
        loop.run_until(lambda: bytes(client.received) == b"first second", timeout=DEADLINE)
        assert len(endpoint.sessions) <= 64
        transport.abort()
        loop.run_until(lambda: bool(client.lost_with), timeout=DEADLINE)
        warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
        assert len(warnings) <= 3, [record.getMessage() for record in warnings]
        server.close()
        server.abort_clients()
        loop.run_until(lambda: not endpoint.sessions, timeout=DEADLINE)
        loop.run_once(0)


def test_one_address_cannot_take_the_table(attack_backend: str) -> None:
    """An attacker that does send a second datagram per conv (so its sessions look live)
    from 127.0.0.2 is held to the per-address cap; a client from 127.0.0.1 is served."""
    with Loop(attack_backend) as loop, raw("127.0.0.2") as attacker:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop, max_sessions=64,
                           max_sessions_per_address=16)
        endpoint = server.endpoints[0]
        target = ("127.0.0.1", server.port)
        for conv in range(1, 201):
            attacker.sendto(HEADER.pack(conv, WASK, 0, 128, 0, 0, 0, 0), target)
            attacker.sendto(HEADER.pack(conv, PUSH, 0, 128, 0, 0, 0, 1) + b"x", target)
            if conv % 32 == 0:
                loop.run_until(lambda: not _readable(endpoint.sock), timeout=DEADLINE)
        loop.run_until(lambda: not _readable(endpoint.sock), timeout=DEADLINE)
        from_attacker = [key for key in endpoint.sessions if key[0][0] == "127.0.0.2"]
        assert len(from_attacker) <= 16
        assert endpoint.statistics()["refused_sessions"] > 0
        echo_round_trip(loop, server.port)
        server.close()
        server.abort_clients()
        loop.run_until(lambda: not endpoint.sessions, timeout=DEADLINE)
        loop.run_once(0)


def test_malformed_datagrams_do_not_keep_a_session_alive(attack_backend: str) -> None:
    """Only a datagram that `input()` accepts counts as hearing from the peer: a stream of
    garbage with the session's conv does not hold it past the idle timeout."""
    with Loop(attack_backend, clock=FakeClock()) as loop, raw() as attacker:
        server_side = RecordingProtocol()
        server = kcp.serve(lambda: server_side, "127.0.0.1", 0, loop=loop, idle_timeout=5.0)
        target = ("127.0.0.1", server.port)
        attacker.sendto(HEADER.pack(77, WASK, 0, 128, 0, 0, 0, 0), target)
        loop.run_once(0)
        assert len(server.connections) == 1
        garbage = HEADER.pack(77, 90, 0, 128, 0, 0, 0, 0)  # unknown command: input() < 0
        ticks = 0

        def tick() -> None:
            nonlocal ticks
            ticks += 1
            attacker.sendto(garbage, target)
            if not server_side.lost_with and ticks < 40:
                loop.call_later(1.0, tick)

        loop.call_later(1.0, tick)
        loop.run_until(lambda: bool(server_side.lost_with), timeout=60)
        assert isinstance(server_side.lost_with[0], TimeoutError)
        assert ticks <= 7, f"garbage kept the session alive for {ticks} s"
        server.close()
        loop.run_once(0)


def test_anti_amplification(attack_backend: str) -> None:
    """One 1.4 KB PUSH from a source that never acknowledges draws at most 3x its bytes
    back over 20 s of retransmissions, while a client that does acknowledge gets a reply
    far larger than its request."""
    with Loop(attack_backend, clock=FakeClock()) as loop, raw() as attacker:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop, idle_timeout=30.0)
        target = ("127.0.0.1", server.port)
        sender = Kcp(99, lambda datagram: attacker.sendto(datagram, target))
        sender.update(0)
        sender.send(os.urandom(1376))
        sent = 0

        def counting_output(datagram: bytes) -> None:
            nonlocal sent
            sent += len(datagram)
            attacker.sendto(datagram, target)

        sender.set_output(counting_output)
        sender.flush()
        settle(loop, server)
        assert len(server.connections) == 1
        start = loop.time()
        received = 0

        def collect() -> None:
            nonlocal received
            received += sum(map(len, drain(attacker)))
            if loop.time() - start < 20:
                loop.call_later(0.05, collect)

        collect()
        loop.run_until(lambda: loop.time() - start >= 20.5, timeout=60)
        assert 0 < received <= 3 * sent, f"sent {sent} B, drew {received} B"
        server.close()
        server.abort_clients()
        loop.run_once(0)


def test_a_small_request_still_gets_a_large_reply(attack_backend: str) -> None:
    """The amplification limit must not stall an honest peer: a 5-byte request answered
    with 200 KB arrives whole (the peer proves itself by acknowledging)."""

    class Download(RecordingProtocol):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            assert self.transport is not None
            self.transport.write(b"z" * 200_000)

    with Loop(attack_backend) as loop:
        server = kcp.serve(Download, "127.0.0.1", 0, loop=loop)
        client = RecordingProtocol()
        transport, _ = loop.run_until_complete(
            kcp.connect(lambda: client, "127.0.0.1", server.port, loop=loop), timeout=DEADLINE)
        transport.write(b"hello")
        loop.run_until(lambda: len(client.received) >= 200_000, timeout=DEADLINE)
        assert bytes(client.received) == b"z" * 200_000
        transport.abort()
        server.close()
        server.abort_clients()
        loop.run_until(lambda: not server.endpoints[0].sessions, timeout=DEADLINE)
        loop.run_once(0)


def _count_timer_wakeups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counter = [0]
    original = kcp.KcpTransport._on_timer

    def counting(self: kcp.KcpTransport) -> None:
        counter[0] += 1
        original(self)

    monkeypatch.setattr(kcp.KcpTransport, "_on_timer", counting)
    return counter


def test_unacknowledged_sessions_cost_few_timer_wakeups(
        attack_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """50 sessions whose peers never acknowledge the echo: over 60 s the server wakes up
    per retransmission (RTO backoff), not every 10 ms; with dead_link = 6 each session
    ends with TimeoutError long before the 120 s idle timeout."""
    wakeups = _count_timer_wakeups(monkeypatch)
    lost: list[Exception | None] = []

    class Echo(EchoProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            lost.append(exc)

    profile = kcp.KcpProfile("short-dead-link", 1, 10, 2, 1, snd_wnd=128, rcv_wnd=128,
                             dead_link=6)
    with Loop(attack_backend, clock=FakeClock()) as loop, raw() as attacker:
        server = kcp.serve(Echo, "127.0.0.1", 0, loop=loop, profile=profile,
                           idle_timeout=120.0)
        target = ("127.0.0.1", server.port)
        for conv in range(1, 51):
            # a WASK then a PUSH: each session is live enough to be echoed to
            attacker.sendto(HEADER.pack(conv, WASK, 0, 128, 0, 0, 0, 0), target)
            attacker.sendto(HEADER.pack(conv, PUSH, 0, 128, 0, 0, 0, 100) + bytes(100),
                            target)
        settle(loop, server)
        assert len(server.connections) == 50
        start = loop.time()
        loop.run_until(lambda: len(lost) == 50 or loop.time() - start > 60, timeout=120)
        drain(attacker)
        assert len(lost) == 50
        assert all(isinstance(exc, TimeoutError) and "dead link" in str(exc) for exc in lost)
        assert wakeups[0] <= 50 * 12, f"{wakeups[0]} timer wake-ups for 50 sessions"
        server.close()
        loop.run_once(0)


def test_zero_window_sessions_back_off_their_probes(
        attack_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peers that advertise a zero receive window after the server has data for them:
    the server probes with ikcp's backoff (7 s, x1.5, up to 120 s), so 60 s cost a
    handful of wake-ups per session instead of one every 10 ms."""
    wakeups = _count_timer_wakeups(monkeypatch)
    with Loop(attack_backend, clock=FakeClock()) as loop, raw() as attacker:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop, idle_timeout=300.0)
        target = ("127.0.0.1", server.port)
        for conv in range(1, 21):
            attacker.sendto(HEADER.pack(conv, WASK, 0, 0, 0, 0, 0, 0), target)
            attacker.sendto(HEADER.pack(conv, PUSH, 0, 0, 0, 0, 0, 100) + bytes(100), target)
        settle(loop, server)
        assert len(server.connections) == 20
        start = loop.time()
        loop.run_until(lambda: loop.time() - start > 60, timeout=120)
        drain(attacker)
        assert len(server.connections) == 20
        assert wakeups[0] <= 20 * 10, f"{wakeups[0]} timer wake-ups for 20 sessions"
        server.close()
        server.abort_clients()
        loop.run_once(0)


def test_oversized_and_out_of_order_segments_are_bounded(attack_backend: str) -> None:
    """PUSH segments longer than the MSS are refused; out-of-order segments (sn 0 never
    sent) hold at most the receive buffer's byte cap."""
    with Loop(attack_backend) as loop, raw() as attacker:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop)
        endpoint = server.endpoints[0]
        target = ("127.0.0.1", server.port)
        attacker.sendto(HEADER.pack(5, WASK, 0, 128, 0, 0, 0, 0), target)
        for sn in range(1, 20):
            attacker.sendto(HEADER.pack(5, PUSH, 0, 128, 0, sn, 0, 60000) + bytes(60000),
                            target)
        loop.run_until(lambda: not _readable(endpoint.sock), timeout=DEADLINE)
        (session,) = endpoint.sessions.values()
        assert session._kcp.nrcv_buf == 0, "segments longer than the MSS were kept"
        mss = FAST.mtu - 24
        for sn in range(1, 128):
            attacker.sendto(HEADER.pack(5, PUSH, 0, 128, 0, sn, 0, mss) + bytes(mss), target)
            if sn % 32 == 0:
                loop.run_until(lambda: not _readable(endpoint.sock), timeout=DEADLINE)
        loop.run_until(lambda: not _readable(endpoint.sock), timeout=DEADLINE)
        held = session._kcp.rcv_buf_bytes
        assert held <= session._kcp.rcv_buf_limit
        assert session._kcp.rcv_buf_limit <= FAST.rcv_wnd * mss
        echo_round_trip(loop, server.port)
        server.close()
        server.abort_clients()
        loop.run_until(lambda: not endpoint.sessions, timeout=DEADLINE)
        loop.run_once(0)


def test_mass_expiry_keeps_recently_closed_bounded(attack_backend: str) -> None:
    """5000 sessions closing at once: the recently-closed memory stays under its cap,
    its entries expire in order, and a pair that expired may open a session again."""
    with Loop(attack_backend, clock=FakeClock()) as loop, raw() as attacker:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop, max_sessions=5000,
                           max_sessions_per_address=5000, idle_timeout=5.0)
        endpoint = server.endpoints[0]
        target = ("127.0.0.1", server.port)
        for conv in range(1, 5001):
            attacker.sendto(HEADER.pack(conv, WASK, 0, 128, 0, 0, 0, 0), target)
            if conv % 200 == 0:
                settle(loop, server)
        settle(loop, server)
        assert len(endpoint.sessions) == 5000
        loop.run_until(lambda: not endpoint.sessions, timeout=60)
        recently = endpoint.recently_closed
        assert len(recently) <= recently.capacity
        assert (attacker.getsockname(), 1) in recently or len(recently) == recently.capacity
        loop.run_until(lambda: len(recently) == 0, timeout=120)
        attacker.sendto(HEADER.pack(1, WASK, 0, 128, 0, 0, 0, 0), target)
        settle(loop, server)
        assert len(endpoint.sessions) == 1
        server.close()
        server.abort_clients()
        loop.run_once(0)


def test_write_buffer_size_counts_bytes(attack_backend: str) -> None:
    with Loop(attack_backend) as loop, raw() as silent:  # never answers: data stays unacked
        client = RecordingProtocol()
        transport, _ = loop.run_until_complete(
            kcp.connect(lambda: client, "127.0.0.1", silent.getsockname()[1], loop=loop),
            timeout=DEADLINE)
        transport.write(b"0123456789")
        assert transport.get_write_buffer_size() == 10
        transport.write(b"x" * 5000)
        assert transport.get_write_buffer_size() == 5010
        transport.abort()
        loop.run_until(lambda: bool(client.lost_with), timeout=DEADLINE)


def settle(loop: Loop, server: kcp.KcpServer) -> None:
    """Read what the attacker sent without letting a FakeClock jump (a blocking wait would
    move fake time to the next timer before the datagrams are read)."""
    for _ in range(10_000):
        if not any(_readable(endpoint.sock) for endpoint in server.endpoints):
            return
        loop.run_once(0)
    raise AssertionError("the server never drained its socket")


def _readable(sock: socket.socket) -> bool:
    """Datagrams are still queued in the kernel for `sock`."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False
    except OSError:
        return False
