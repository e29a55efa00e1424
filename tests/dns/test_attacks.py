"""DNS over TCP under attack: dripping and idle connections cannot lock good clients out.

The attack (issue 13): 1100 connections each sending one byte every 8 s held every fd,
because every byte restarted the idle timer. Now a message must be complete within
`tcp_message_timeout` of its first byte whatever trickles in, and at most
`max_tcp_connections` are open: a new connection pushes out the least recently useful one.
Timing is checked on a fake clock (in memory); the real-socket tests, on two backends,
assert events (a good client's answer arrives, the dripper is closed) and counts, never
durations.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import pytest

from muxio.handlers.dns import DnsServer, ZoneSet, load_zones
from muxio.loop import Loop
from muxio.testing.clock import FakeClock
from muxio.testing.matrix import matrix_backends
from tests.dns.helpers import ZONE_FILES, serving, tcp_query, udp_query
from tests.dns.test_answer import Client, connect, framed

DEADLINE = 10.0
BACKENDS = [name for name in ("epoll", "poll") if name in matrix_backends()]


@pytest.fixture(scope="module")
def zones() -> ZoneSet:
    return load_zones(ZONE_FILES)


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop(clock=FakeClock()) as fake_clock_loop:
        yield fake_clock_loop


def drip(loop: Loop, client: Client, data: bytes, every: float) -> None:
    """Send `data` one byte per `every` seconds (fake clock)."""
    assert client.transport is not None
    for index, byte in enumerate(data):
        loop.call_later(every * index, lambda byte=byte: client.transport and
                        not client.lost and client.transport.write(bytes([byte])))


def test_a_dripped_message_is_cut_at_its_deadline_from_the_first_byte(
        zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop, tcp_idle_timeout=10.0, tcp_message_timeout=5.0)
    client = connect(server, loop)
    first_byte = loop.time() + 2.0
    # 200 bytes of a 300-byte frame, one a second: every byte arrives well within any
    # idle timeout of the previous one, the message never completes.
    loop.call_later(2.0, drip, loop, client, (300).to_bytes(2, "big") + b"x" * 198, 1.0)
    loop.run_until(lambda: client.lost, timeout=100)
    assert loop.time() - first_byte == pytest.approx(5.0)
    assert server.statistics().tcp_timeouts == 1 and server.statistics().tcp_open == 0


def test_a_slow_but_complete_message_is_answered(zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop, tcp_idle_timeout=10.0, tcp_message_timeout=5.0)
    client = connect(server, loop)
    query = framed(dns.message.make_query("example.com", "A"))
    drip(loop, client, query, 4.0 / len(query))  # the whole message within 4 s
    loop.run_until(lambda: len(client.messages()) == 1, timeout=100)
    assert not client.lost
    answered = loop.time()
    loop.run_until(lambda: client.lost, timeout=100)  # then idle: closed 10 s later
    assert loop.time() - answered == pytest.approx(10.0)
    assert loop.pending_timers() == 0


def test_a_new_connection_pushes_out_the_least_recently_useful(zones: ZoneSet,
                                                               loop: Loop) -> None:
    server = DnsServer(zones, loop, max_tcp_connections=3)
    useful, dripping, idle = connect(server, loop), connect(server, loop), connect(server, loop)
    assert useful.transport is not None and dripping.transport is not None
    dripping.transport.write(b"\x00")  # a message started, never finished
    useful.transport.write(framed(dns.message.make_query("example.com", "A")))
    loop.run_until(lambda: len(useful.messages()) == 1, timeout=10)
    newcomer = connect(server, loop)
    loop.run_until(lambda: dripping.lost, timeout=10)
    assert not useful.lost and not idle.lost and not newcomer.lost
    latest = connect(server, loop)
    loop.run_until(lambda: idle.lost, timeout=10)
    assert not useful.lost and not newcomer.lost and not latest.lost
    statistics = server.statistics()
    assert statistics.tcp_open == 3 and statistics.tcp_evicted == 2


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_dripping_connections_do_not_lock_out_tcp_or_udp_clients(backend_name: str) -> None:
    """48 connections each holding an unfinished message against a cap of 16 and a message
    deadline far beyond the test: the good client gets its TCP answer (the oldest
    drippers were pushed out), UDP is answered throughout, and no more than 16 TCP
    connections are ever open."""
    query = dns.message.make_query("www.example.com", "A")
    with serving(backend_name, max_tcp_connections=16, tcp_message_timeout=600.0,
                 tcp_idle_timeout=600.0) as served:
        drippers = []
        try:
            for _ in range(48):
                sock = socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE)
                sock.sendall(b"\x00")  # the first byte of a length prefix
                drippers.append(sock)
                assert udp_query(query, served.port).rcode() == dns.rcode.NOERROR
            reply = tcp_query(query, served.port, timeout=DEADLINE)
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer
            statistics = served.runner.call(lambda loop: served.server.statistics())
            assert statistics.tcp_open <= 16
            assert statistics.tcp_evicted >= 48 + 1 - 16
        finally:
            for sock in drippers:
                sock.close()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_dripper_is_closed_at_its_message_deadline(backend_name: str) -> None:
    with serving(backend_name, tcp_message_timeout=0.2) as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE) as sock:
            sock.sendall(b"\x00\x30abc")  # 3 bytes of a 48-byte message, then nothing
            assert sock.recv(100) == b""  # EOF: the server closed it (an event, not a time)
        statistics = served.runner.call(lambda loop: served.server.statistics())
        assert statistics.tcp_timeouts == 1
        # UDP and a new TCP client are served as ever.
        query = dns.message.make_query("example.com", "SOA")
        assert udp_query(query, served.port).answer
        assert tcp_query(query, served.port, timeout=DEADLINE).answer
