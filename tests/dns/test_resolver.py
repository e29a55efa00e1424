"""The resolver: its sans-I/O core on scripted events, then the real thing on every backend
against our server, nsd, nothing at all, and a server that sends spoofed replies."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from muxio.handlers.dns import (
    DnsTimeoutError,
    Exchange,
    NameServer,
    Resolver,
    ResolverClosedError,
    ServerAddressError,
    parse_server,
)
from muxio.handlers.dns.client import ArmTimer, Finished, SendDatagram, SendStream
from muxio.loop import Loop
from muxio.protocols import Address, DatagramProtocol, DatagramTransport
from muxio.testing.clock import FakeClock
from muxio.testing.server import LoopThread
from muxio.transports import udp
from muxio.transports.network import LoopNetwork
from tests.dns.helpers import Nsd, ServedDns, free_port

FIRST = NameServer("127.0.0.1", 5301)
SECOND = NameServer("::1", 5302)


def response(query: dns.message.Message, *addresses: str,
             rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
             truncated: bool = False) -> dns.message.Message:
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    if addresses:
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                *addresses))
    if truncated:
        reply.flags |= dns.flags.TC
    return reply


def answers(message: dns.message.Message) -> set[str]:
    return {rdata.to_text() for rrset in message.answer for rdata in rrset}


# -- the sans-I/O core ---------------------------------------------------------------------


def new_exchange(*servers: NameServer, tries: int = 2) -> Exchange:
    query = dns.message.make_query("example.com", "A")
    return Exchange(query, servers or (FIRST,), timeout=1.0, tries=tries)


def test_core_asks_each_server_in_turn_then_times_out() -> None:
    exchange = new_exchange(FIRST, SECOND, tries=2)
    sent = []
    actions = exchange.start(0.0)
    now = 0.0
    while True:
        timer = next(action for action in actions if isinstance(action, ArmTimer))
        assert timer.deadline == now + 1.0
        sent.extend(action.server for action in actions if isinstance(action, SendDatagram))
        now = timer.deadline
        actions = exchange.timer_expired(now)
        if any(isinstance(action, Finished) for action in actions):
            break
    assert sent == [FIRST, SECOND, FIRST, SECOND]
    [finished] = actions
    assert isinstance(finished, Finished) and isinstance(finished.error, DnsTimeoutError)
    assert "after 2 tries of 1.0 s" in str(finished.error)
    assert exchange.done and exchange.attempts == 4
    assert exchange.timer_expired(now + 5) == []  # a late timer changes nothing


def test_core_ignores_wrong_source_id_question_and_garbage() -> None:
    exchange = new_exchange()
    exchange.start(0.0)
    good = response(exchange.query, "192.0.2.1")
    wrong_id = response(exchange.query, "192.0.2.66")
    wrong_id.id = (exchange.query.id + 1) % 65536
    other_question = response(dns.message.make_query("example.org", "A"), "192.0.2.67")
    other_question.id = exchange.query.id
    not_a_response = dns.message.make_query("example.com", "A")
    not_a_response.id = exchange.query.id
    assert exchange.datagram_received(good.to_wire(), ("127.0.0.1", 9999), 0.1) == []
    assert exchange.datagram_received(good.to_wire(), ("127.0.0.2", 5301), 0.1) == []
    assert exchange.datagram_received(wrong_id.to_wire(), FIRST.address, 0.1) == []
    assert exchange.datagram_received(other_question.to_wire(), FIRST.address, 0.1) == []
    assert exchange.datagram_received(not_a_response.to_wire(), FIRST.address, 0.1) == []
    assert exchange.datagram_received(b"\x00\x01garbage", FIRST.address, 0.1) == []
    assert exchange.ignored == 6 and not exchange.done
    [finished] = exchange.datagram_received(good.to_wire(), FIRST.address, 0.2)
    assert isinstance(finished, Finished) and finished.reply is not None
    assert answers(finished.reply.message) == {"192.0.2.1"}
    assert finished.reply.transport == "udp"


def test_core_accepts_a_late_answer_from_a_server_asked_earlier() -> None:
    exchange = new_exchange(FIRST, SECOND)
    exchange.start(0.0)
    exchange.timer_expired(1.0)  # now asking SECOND
    assert exchange.current == (SECOND, False)
    [finished] = exchange.datagram_received(response(exchange.query, "192.0.2.1").to_wire(),
                                            ("127.0.0.1", 5301, 0, 0), 1.5)
    assert isinstance(finished, Finished) and finished.reply is not None
    assert finished.reply.server == FIRST


def test_core_retries_over_tcp_after_tc() -> None:
    exchange = new_exchange(FIRST, SECOND)
    exchange.start(0.0)
    truncated = response(exchange.query, truncated=True)
    timer, send = exchange.datagram_received(truncated.to_wire(), FIRST.address, 0.3)
    assert timer == ArmTimer(1.3)
    assert isinstance(send, SendStream) and send.server == FIRST
    assert send.wire == exchange.wire
    assert exchange.datagram_received(truncated.to_wire(), FIRST.address, 0.4) == []
    [finished] = exchange.stream_received(FIRST, response(exchange.query, "192.0.2.1",
                                                          "192.0.2.2").to_wire(), 0.5)
    assert isinstance(finished, Finished) and finished.reply is not None
    assert finished.reply.transport == "tcp"
    assert len(finished.reply.message.answer[0]) == 2


def test_core_moves_on_when_tcp_fails() -> None:
    exchange = new_exchange(FIRST, SECOND)
    exchange.start(0.0)
    exchange.datagram_received(response(exchange.query, truncated=True).to_wire(),
                               FIRST.address, 0.1)
    assert exchange.attempt_failed(SECOND, True, ConnectionRefusedError(), 0.2) == []  # stale
    _timer, send = exchange.attempt_failed(FIRST, True, ConnectionRefusedError(), 0.2)
    assert isinstance(send, SendDatagram) and send.server == SECOND


def test_core_refused_tries_the_next_server_and_falls_back_to_the_last_refusal() -> None:
    exchange = new_exchange(FIRST, SECOND)
    exchange.start(0.0)
    refused = response(exchange.query, rcode=dns.rcode.REFUSED)
    _timer, send = exchange.datagram_received(refused.to_wire(), FIRST.address, 0.1)
    assert isinstance(send, SendDatagram) and send.server == SECOND
    servfail = response(exchange.query, rcode=dns.rcode.SERVFAIL)
    [finished] = exchange.datagram_received(servfail.to_wire(), ("::1", 5302), 0.2)
    assert isinstance(finished, Finished) and finished.reply is not None
    assert finished.reply.message.rcode() == dns.rcode.SERVFAIL


def test_core_nxdomain_is_an_answer() -> None:
    exchange = new_exchange(FIRST, SECOND)
    exchange.start(0.0)
    nxdomain = response(exchange.query, rcode=dns.rcode.NXDOMAIN)
    [finished] = exchange.datagram_received(nxdomain.to_wire(), FIRST.address, 0.1)
    assert isinstance(finished, Finished) and finished.reply is not None


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1", NameServer("127.0.0.1", 53)),
    ("127.0.0.1:5353", NameServer("127.0.0.1", 5353)),
    ("::1", NameServer("::1", 53)),
    ("[::1]:5353", NameServer("::1", 5353)),
    ("[::1]", NameServer("::1", 53)),
])
def test_server_addresses(text: str, expected: NameServer) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("localhost", "not an IP address"),
    ("127.0.0.1:dns", "not a number"),
    ("[::1", "missing ']'"),
    ("127.0.0.1:0", "out of range"),
])
def test_bad_server_addresses(text: str, message: str) -> None:
    with pytest.raises(ServerAddressError, match=message):
        parse_server(text)


# -- on a real loop ------------------------------------------------------------------------


@contextmanager
def client_loop(backend: str, clock: FakeClock | None = None) -> Iterator[Loop]:
    with Loop(backend, clock=clock) as loop:
        yield loop
        for _ in range(3):
            loop.run_once(0)  # closed endpoints release their sockets


def resolve(backend: str, servers: list[str], name: str, rdtype: str = "A", *,
            tcp: bool = False, timeout: float = 2.0, tries: int = 2) -> tuple[
        dns.message.Message, str]:
    with client_loop(backend) as loop:
        resolver = Resolver(LoopNetwork(loop), servers, timeout=timeout, tries=tries)
        query = resolver.make_query(name, rdtype)
        reply = loop.run_until_complete(resolver.ask(query, tcp=tcp), timeout=30)
        assert resolver.pending() == 0
        return reply.message, reply.transport


RESOLVER_CASES = [
    ("example.com", "A", dns.rcode.NOERROR, {"192.0.2.1"}),
    ("example.com", "MX", dns.rcode.NOERROR, {"10 mail.example.com.", "20 mail.example.org."}),
    ("alias.example.com", "AAAA", dns.rcode.NOERROR, {"www.example.com.", "example.com.",
                                                      "2001:db8::1"}),
    ("missing.example.com", "A", dns.rcode.NXDOMAIN, set()),
]


@pytest.mark.parametrize("case", RESOLVER_CASES, ids=[f"{c[0]}-{c[1]}" for c in RESOLVER_CASES])
def test_resolver_against_our_server_and_nsd(
        served: ServedDns, nsd: Nsd,
        case: tuple[str, str, dns.rcode.Rcode, set[str]]) -> None:
    name, rdtype, rcode, expected = case
    for port in (served.port, nsd.port):
        message, transport = resolve(served.backend, [f"127.0.0.1:{port}"], name, rdtype)
        assert message.rcode() == rcode
        assert answers(message) == expected
        assert transport == "udp"


def test_resolver_retries_over_tcp_after_tc(served: ServedDns, nsd: Nsd) -> None:
    for port in (served.port, nsd.port):
        message, transport = resolve(served.backend, [f"127.0.0.1:{port}"],
                                     "big.example.com", "TXT")
        assert transport == "tcp"
        assert not message.flags & dns.flags.TC
        assert len(message.answer[0][0].strings) == 12  # type: ignore[attr-defined]


def test_resolver_over_tcp_from_the_start(served: ServedDns) -> None:
    message, transport = resolve(served.backend, [f"127.0.0.1:{served.port}"],
                                 "example.com", "NS", tcp=True)
    assert transport == "tcp"
    assert answers(message) == {"ns1.example.com.", "ns2.example.com."}


def test_resolver_times_out_when_nothing_listens(served: ServedDns) -> None:
    """Two tries of 2 s each, on the fake clock: no real waiting."""
    silent = free_port()
    with client_loop(served.backend, FakeClock()) as loop:
        resolver = Resolver(LoopNetwork(loop), [f"127.0.0.1:{silent}"], timeout=2.0, tries=2)
        started = loop.time()
        with pytest.raises(DnsTimeoutError, match=f"127.0.0.1:{silent} after 2 tries of 2.0"):
            loop.run_until_complete(resolver.query("example.com"), timeout=60)
        assert loop.time() - started == pytest.approx(4.0)
        assert resolver.pending() == 0


def test_resolver_falls_back_to_the_next_server(served: ServedDns) -> None:
    silent = free_port()
    message, _ = resolve(served.backend, [f"127.0.0.1:{silent}", f"127.0.0.1:{served.port}"],
                         "example.com", timeout=0.2, tries=1)
    assert answers(message) == {"192.0.2.1"}


class Spoofer(DatagramProtocol):
    """A hostile network: before the genuine reply, a reply with the wrong ID, one with
    the right ID from another port (a spoofed source), and garbage."""

    def __init__(self, accomplice: socket.socket) -> None:
        self.accomplice = accomplice
        self.transport: DatagramTransport | None = None

    def connection_made(self, transport: DatagramTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        query = dns.message.from_wire(data)
        wrong_id = response(query, "192.0.2.66")
        wrong_id.id = (query.id + 1) % 65536
        self.transport.sendto(wrong_id.to_wire(), addr)
        self.accomplice.sendto(response(query, "192.0.2.67").to_wire(), addr)
        self.transport.sendto(data[:2] + b"\x80garbage", addr)
        self.transport.sendto(response(query, "192.0.2.77").to_wire(), addr)


def test_resolver_ignores_mismatched_and_spoofed_replies(backend: str) -> None:
    with LoopThread(backend) as runner, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as accomplice:
        accomplice.bind(("127.0.0.1", 0))
        transport, _ = runner.call(lambda loop: udp.create_endpoint(
            lambda: Spoofer(accomplice), ("127.0.0.1", 0), loop=loop))
        runner.on_close(lambda loop: transport.close())
        port = transport.get_extra_info("sockname")[1]
        for _ in range(3):
            message, _transport = resolve(backend, [f"127.0.0.1:{port}"], "example.com")
            assert answers(message) == {"192.0.2.77"}


def test_close_fails_pending_queries_and_releases_sockets(backend: str) -> None:
    silent = free_port()
    with client_loop(backend) as loop:
        resolver = Resolver(LoopNetwork(loop), [f"127.0.0.1:{silent}"], timeout=30)
        pending = [resolver.query(f"host{index}.example.com") for index in range(5)]
        cancelled = resolver.query("cancelled.example.com")
        loop.run_once(0)
        assert resolver.pending() == 6
        cancelled.cancel()
        loop.run_once(0)
        loop.run_once(0)
        assert resolver.pending() == 5
        resolver.close()
        for future in pending:
            with pytest.raises(ResolverClosedError):
                loop.run_until_complete(future, timeout=5)
        assert loop.pending_timers() == 0
        with pytest.raises(ResolverClosedError):
            resolver.query("late.example.com")


def test_local_socket_errors_fail_the_attempt_with_the_reason(backend: str) -> None:
    class NoFds(LoopNetwork):
        def open_datagram(self, protocol_factory: object, family: int) -> Any:
            raise OSError(errno.EMFILE, "Too many open files")

    with client_loop(backend, FakeClock()) as loop:
        resolver = Resolver(NoFds(loop), ["127.0.0.1:53", "[::1]:53"], timeout=5.0, tries=2)
        started = loop.time()
        with pytest.raises(DnsTimeoutError, match="Too many open files"):
            loop.run_until_complete(resolver.query("example.com"), timeout=60)
        assert loop.time() == started  # no attempt waited for its timeout
        assert resolver.pending() == 0 and loop.pending_timers() == 0
