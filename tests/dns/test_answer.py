"""The answering core and the server shells, in memory: no sockets, a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest

from muxio.handlers.dns import DnsServer, Responder, Zone, ZoneSet, load_zones
from muxio.handlers.dns.answer import MAX_CNAME_CHAIN
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.clock import FakeClock
from muxio.testing.memory import memory_pair
from tests.dns.helpers import ZONE_FILES


@pytest.fixture(scope="module")
def zones() -> ZoneSet:
    return load_zones(ZONE_FILES)


@pytest.fixture
def responder(zones: ZoneSet) -> Responder:
    return Responder(zones)


def in_memory_zone(text: str, origin: str = "mem.test.") -> ZoneSet:
    zone = dns.zone.from_text(text, origin=origin, relativize=False)
    return ZoneSet([Zone.from_dnspython(zone)])


HEAD = "$TTL 300\n@ IN SOA ns hostmaster 1 3600 900 604800 60\n@ IN NS ns\nns IN A 192.0.2.1\n"


def ask(responder: Responder, query: dns.message.Message | bytes, *,
        tcp: bool = False) -> dns.message.Message:
    wire = query if isinstance(query, bytes) else query.to_wire()
    response, _ = responder.respond(wire, tcp=tcp)
    assert response is not None
    return dns.message.from_wire(response)


def test_silence_for_fragments_and_responses(responder: Responder) -> None:
    assert responder.respond(b"\x12\x34\x01", tcp=False) == (None, False)
    query = dns.message.make_query("example.com", "A")
    query.flags |= dns.flags.QR
    assert responder.respond(query.to_wire(), tcp=False) == (None, False)


def test_notimp_and_formerr_echo_id_opcode_and_rd(responder: Responder) -> None:
    query = dns.message.make_query("example.com", "A")
    query.set_opcode(dns.opcode.UPDATE)
    response, cacheable = responder.respond(query.to_wire(), tcp=False)
    assert response is not None and not cacheable and len(response) == 12
    reply = dns.message.from_wire(response)
    assert reply.id == query.id and reply.opcode() == dns.opcode.UPDATE
    assert reply.rcode() == dns.rcode.NOTIMP and reply.flags & dns.flags.RD
    two_questions = query.to_wire()[:5] + b"\x02" + query.to_wire()[6:]
    response, cacheable = responder.respond(b"\x00\x07\x01\x00" + two_questions[4:],
                                            tcp=False)
    assert response is not None and not cacheable
    assert dns.message.from_wire(response).rcode() == dns.rcode.FORMERR


def test_badvers(responder: Responder) -> None:
    reply = ask(responder, dns.message.make_query("example.com", "A", use_edns=1))
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0 and not reply.flags & dns.flags.AA and not reply.answer


def test_edns_payload_and_do_bit(responder: Responder) -> None:
    reply = ask(responder, dns.message.make_query("example.com", "A", want_dnssec=True,
                                                  payload=4096))
    assert reply.edns == 0 and reply.payload == 1232
    assert reply.ednsflags & dns.flags.DO
    plain = ask(responder, dns.message.make_query("example.com", "A"))
    assert plain.edns == -1  # no OPT for a query without one


def test_truncation_over_udp_only(responder: Responder) -> None:
    query = dns.message.make_query("big.example.com", "TXT", use_edns=0, payload=4096)
    truncated = ask(responder, query)
    assert truncated.flags & dns.flags.TC and truncated.flags & dns.flags.AA
    assert not truncated.answer and not truncated.authority and not truncated.additional
    assert truncated.edns == 0  # the OPT stays
    full = ask(responder, query, tcp=True)
    assert not full.flags & dns.flags.TC and len(full.answer[0][0].strings) == 12  # type: ignore[attr-defined]


def test_512_bytes_without_edns() -> None:
    text = HEAD + "mid IN TXT " + " ".join(['"' + "x" * 100 + '"'] * 6) + "\n"
    responder = Responder(in_memory_zone(text))
    without = ask(responder, dns.message.make_query("mid.mem.test", "TXT"))
    assert without.flags & dns.flags.TC
    with_edns = ask(responder, dns.message.make_query("mid.mem.test", "TXT", use_edns=0,
                                                      payload=1232))
    assert not with_edns.flags & dns.flags.TC and with_edns.answer
    tiny = ask(responder, dns.message.make_query("mid.mem.test", "TXT", use_edns=0,
                                                 payload=100))
    assert tiny.flags & dns.flags.TC  # below 512 counts as 512


def test_additional_records_that_do_not_fit_are_dropped_without_tc() -> None:
    hosts = "".join(f"h{index} IN A 192.0.2.{index}\nh{index} IN AAAA 2001:db8::{index}\n"
                    for index in range(40))
    exchanges = "".join(f"@ IN MX {index} h{index}\n" for index in range(12))
    responder = Responder(in_memory_zone(HEAD + hosts + exchanges))
    reply = ask(responder, dns.message.make_query("mem.test", "MX"))
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 12
    assert 0 < len(reply.additional) < 24


def test_cname_chains_stop(zones: ZoneSet) -> None:
    chain = "".join(f"c{index} IN CNAME c{index + 1}\n" for index in range(40))
    responder = Responder(in_memory_zone(HEAD + chain))
    reply = ask(responder, dns.message.make_query("c0.mem.test", "A"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert len(reply.answer) == MAX_CNAME_CHAIN
    loop = ask(Responder(zones), dns.message.make_query("loop1.example.com", "A"))
    assert [rrset.rdtype for rrset in loop.answer] == [dns.rdatatype.CNAME] * 2


def test_qname_spelling_is_kept(responder: Responder) -> None:
    reply = ask(responder, dns.message.make_query("WwW.ExAmPlE.CoM", "A"))
    assert reply.question[0].name.to_text() == "WwW.ExAmPlE.CoM."
    assert reply.answer[0].name.to_text() == "WwW.ExAmPlE.CoM."


@pytest.mark.parametrize(("qname", "rdtype"), [
    ("mail.example.com", "A"), ("example.com", "SOA"), ("quoted.example.com", "TXT"),
    ("www.example.com", "CNAME"), ("_sip._tcp.example.com", "SRV"),
    ("foo.wild.example.com", "A")])
def test_any_returns_one_rrset_as_rfc_8482_and_nsd(responder: Responder, qname: str,
                                                   rdtype: str) -> None:
    reply = ask(responder, dns.message.make_query(qname, "ANY"))
    assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.from_text(rdtype)]
    assert not reply.authority  # no apex NS for ANY, as nsd


def test_any_prefers_address_types_else_the_last_other_type() -> None:
    responder = Responder(in_memory_zone(
        HEAD + 'multi IN TXT "t"\nmulti IN CAA 0 issue "ca"\nmulti IN MX 5 ns\n'
               'other IN TXT "t"\nother IN CAA 0 issue "ca"\n'))
    preferred = ask(responder, dns.message.make_query("multi.mem.test", "ANY"))
    assert [rrset.rdtype for rrset in preferred.answer] == [dns.rdatatype.MX]
    assert [rrset.rdtype for rrset in preferred.additional] == [dns.rdatatype.A]
    other = ask(responder, dns.message.make_query("other.mem.test", "ANY"))
    assert [rrset.rdtype for rrset in other.answer] == [dns.rdatatype.CAA]


@pytest.mark.parametrize(("qname", "qtype", "rdclass"), [
    ("example.com", "A", "CH"), ("example.com", "AXFR", "IN"), ("example.com", "IXFR", "IN"),
    ("example.net", "A", "IN")])
def test_refused(responder: Responder, qname: str, qtype: str, rdclass: str) -> None:
    reply = ask(responder, dns.message.make_query(qname, qtype, rdclass=rdclass))
    assert reply.rcode() == dns.rcode.REFUSED and not reply.flags & dns.flags.AA


def test_invalid_max_udp_payload(zones: ZoneSet) -> None:
    with pytest.raises(ValueError, match="512-65535"):
        Responder(zones, max_udp_payload=100)


# -- DnsServer: caches and reload ----------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop(clock=FakeClock()) as fake_clock_loop:
        yield fake_clock_loop


def test_cached_response_patches_the_id(zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop)
    first = dns.message.make_query("example.com", "MX", id=1)
    second = dns.message.make_query("example.com", "MX", id=2)
    one = server.answer(first.to_wire(), tcp=False)
    two = server.answer(second.to_wire(), tcp=False)
    assert one is not None and two is not None
    assert one[:2] == b"\x00\x01" and two[:2] == b"\x00\x02" and one[2:] == two[2:]
    assert server.statistics().built == 1
    assert server.answer(first.to_wire(), tcp=True) is not None  # TCP has its own cache
    assert server.statistics().built == 2
    assert server.answer(b"\x00\x01\x01\x00\x00\x02" + bytes(6), tcp=False) is not None
    assert server.statistics().formerr == 1
    statistics = server.statistics()
    assert statistics.cached == 2  # UDP and TCP query bytes
    assert statistics.compiled == 2 and statistics.fallback == 0
    assert statistics.fallbacks["wire"] == 1  # the FORMERR (two questions)


def test_answers_for_names_that_do_not_exist_are_not_cached(zones: ZoneSet,
                                                              loop: Loop) -> None:
    """A random-subdomain flood must not churn the raw-bytes cache."""
    server = DnsServer(zones, loop)
    for index in range(10):
        for name in (f"r{index}.wild.example.com", f"r{index}.example.com", f"r{index}.net"):
            assert server.answer(dns.message.make_query(name, "A").to_wire(),
                                 tcp=False) is not None
    statistics = server.statistics()
    assert statistics.cached == 0 and statistics.compiled == 30
    assert statistics.templates == 2  # (wild, A, 3) and (example.com, A, 3); REFUSED is fixed


def test_queries_differing_in_an_edns_option_share_the_rendered_response(
        zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop)
    replies = set()
    for cookie in (b"client01", b"client02", b"client03"):  # compiled: options ignored
        query = dns.message.make_query("example.com", "MX", id=7, use_edns=0, options=[
            dns.edns.GenericOption(dns.edns.OptionType.COOKIE, cookie)])
        reply = server.answer(query.to_wire(), tcp=False)
        assert reply is not None
        replies.add(reply)
    for subnet in ("192.0.2.0", "198.51.100.0"):  # dnspython parses client subnet options
        query = dns.message.make_query("example.com", "MX", id=7, use_edns=0, options=[
            dns.edns.ECSOption(subnet, 24)])
        reply = server.answer(query.to_wire(), tcp=False)
        assert reply is not None
        replies.add(reply)
    assert len(replies) == 1
    statistics = server.statistics()
    assert statistics.compiled == 3 and statistics.fallback == 2
    assert statistics.fallbacks["wire"] == 2
    assert len(server.udp_cache) == 5 and statistics.cached == 6  # one rendered response


def test_cache_is_bounded(zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop, cache_size=3)
    for index in range(10):
        spelling = "".join(char.upper() if index >> position & 1 else char
                           for position, char in enumerate("example.com"))
        server.answer(dns.message.make_query(spelling, "A").to_wire(), tcp=False)
    assert len(server.udp_cache) == 3


def test_reload_swaps_zones_and_empties_the_caches(zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop)
    query = dns.message.make_query("example.com", "A").to_wire()
    before = server.answer(query, tcp=False)
    assert before is not None
    assert dns.message.from_wire(before).answer[0][0].to_text() == "192.0.2.1"
    text = ("$ORIGIN example.com.\n$TTL 60\n@ IN SOA ns hm 2 1 1 1 1\n@ IN NS ns\n"
            "@ IN A 192.0.2.222\n")
    server.reload(ZoneSet([Zone.from_dnspython(dns.zone.from_text(text, relativize=False))]))
    after = server.answer(query, tcp=False)
    assert after is not None
    assert dns.message.from_wire(after).answer[0][0].to_text() == "192.0.2.222"
    assert server.statistics().reloads == 1


class FakeDatagramTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent.append(data)


def test_udp_responses_are_dropped_while_the_send_queue_is_full(zones: ZoneSet,
                                                                loop: Loop) -> None:
    server = DnsServer(zones, loop)
    protocol = server.datagram_protocol()
    transport = FakeDatagramTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    query = dns.message.make_query("example.com", "A").to_wire()
    protocol.datagram_received(query, ("127.0.0.1", 1))
    protocol.pause_writing()
    protocol.datagram_received(query, ("127.0.0.1", 1))
    protocol.datagram_received(b"\x00\x01" + query[2:], ("127.0.0.1", 1))
    protocol.resume_writing()
    protocol.datagram_received(query, ("127.0.0.1", 1))
    assert len(transport.sent) == 2
    assert server.statistics().dropped == 2


# -- DnsStreamProtocol over an in-memory link ----------------------------------------------


class Client(Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.lost = False
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def messages(self) -> list[dns.message.Message]:
        out, data = [], bytes(self.data)
        while len(data) >= 2:
            length = int.from_bytes(data[:2], "big")
            out.append(dns.message.from_wire(data[2:2 + length]))
            data = data[2 + length:]
        return out


def framed(query: dns.message.Message) -> bytes:
    wire = query.to_wire()
    return len(wire).to_bytes(2, "big") + wire


def connect(server: DnsServer, loop: Loop) -> Client:
    client = Client()
    memory_pair(loop, client, server.stream_protocol())
    return client


def test_tcp_pipelined_and_split_queries(zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop)
    client = connect(server, loop)
    assert client.transport is not None
    names = ("example.com", "www.example.com", "nope.example.com", "sip.example.com")
    queries = [dns.message.make_query(name, "A") for name in names]
    client.transport.write(b"".join(framed(query) for query in queries[:3]))
    for byte in framed(queries[3]):
        client.transport.write(bytes([byte]))
    loop.run_until(lambda: len(client.messages()) == 4, timeout=10)
    replies = client.messages()
    assert [reply.id for reply in replies] == [query.id for query in queries]
    assert replies[2].rcode() == dns.rcode.NXDOMAIN
    assert not client.lost


def test_tcp_short_frame_closes_the_connection(zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop)
    client = connect(server, loop)
    assert client.transport is not None
    client.transport.write(framed(dns.message.make_query("example.com", "A")) + b"\x00\x03abc")
    loop.run_until(lambda: client.lost, timeout=10)
    assert len(client.messages()) == 1  # the complete query before it was answered


def test_tcp_idle_timeout_counts_from_the_last_query(zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop, tcp_idle_timeout=10.0)
    started = loop.time()
    client = connect(server, loop)
    assert client.transport is not None
    loop.call_later(6.0, client.transport.write,
                    framed(dns.message.make_query("example.com", "A")))
    loop.run_until(lambda: client.lost, timeout=100)
    assert len(client.messages()) == 1
    assert loop.time() - started == pytest.approx(16.0)
    assert loop.pending_timers() == 0


def test_tcp_eof_closes_after_answering(zones: ZoneSet, loop: Loop) -> None:
    server = DnsServer(zones, loop)
    client = connect(server, loop)
    assert client.transport is not None
    client.transport.write(framed(dns.message.make_query("example.com", "NS")))
    client.transport.write_eof()
    loop.run_until(lambda: client.lost, timeout=10)
    assert len(client.messages()) == 1
