"""Differential test: our server and nsd (which no one here wrote) serve the same zone files
and get the same queries; rcode, header flags, EDNS and every section (as sets) must agree.

Where the two deliberately differ, the case is left out and tested on its own elsewhere:
CHAOS-class queries (nsd answers version.bind), NOTIFY (nsd REFUSED, we NOTIMP), AXFR over
UDP (nsd NOTIMP, we REFUSED), and the RD bit of FORMERR replies (nsd copies it on some
paths only). ANY is answered as nsd does (one RRset, RFC 8482), so it is compared too.
test_nsd_random.py adds thousands of random queries on zones of its own.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.dns.helpers import Nsd, ServedDns, tcp_query, udp_query


@dataclass(frozen=True)
class Case:
    qname: str
    qtype: str | int
    recursion: bool = False
    edns: int | None = 0
    payload: int = 1232
    tcp: bool = False
    dnssec_ok: bool = False
    option: bool = False

    def message(self) -> dns.message.Message:
        options = [dns.edns.GenericOption(65001, b"muxio")] if self.option else None
        query = dns.message.make_query(
            self.qname, self.qtype, use_edns=self.edns if self.edns is not None else False,
            payload=self.payload, want_dnssec=self.dnssec_ok, options=options)
        if not self.recursion:
            query.flags &= ~dns.flags.RD
        return query

    @property
    def id(self) -> str:
        extras = [name for name, on in (("rd", self.recursion), ("tcp", self.tcp),
                                        ("do", self.dnssec_ok), ("opt", self.option)) if on]
        edns = "noedns" if self.edns is None else f"edns{self.edns}/{self.payload}"
        return "-".join([self.qname, str(self.qtype), edns, *extras])


NAMES_AND_TYPES = [
    # every record type, at the apex and below it
    ("example.com", "SOA"), ("example.com", "NS"), ("example.com", "MX"),
    ("example.com", "A"), ("example.com", "AAAA"), ("example.com", "TXT"),
    ("example.com", "CAA"), ("_sip._tcp.example.com", "SRV"),
    ("1.2.0.192.in-addr.arpa", "PTR"), ("25.2.0.192.in-addr.arpa", "PTR"),
    ("2.0.192.in-addr.arpa", "NS"), ("quoted.example.com", "TXT"),
    ("mail.example.com", "AAAA"), ("ns1.example.com", "A"), ("mx2.example.com", "MX"),
    # CNAMEs: one, a chain, dangling, into another zone, out of our zones, into a
    # delegation, to NODATA, to another zone's NXDOMAIN, loops, and asked for directly
    ("www.example.com", "A"), ("www.example.com", "CNAME"), ("alias.example.com", "A"),
    ("alias.example.com", "MX"), ("dangling.example.com", "A"),
    ("outside.example.com", "A"), ("toext.example.com", "A"), ("tosub.example.com", "A"),
    ("tonodata.example.com", "TXT"), ("toorgnx.example.com", "A"),
    ("loop1.example.com", "A"), ("loop1.example.com", "CNAME"),
    # wildcards: synthesis, deeper, NODATA at a wildcard, an existing name beside one,
    # a wildcard CNAME, an empty non-terminal that blocks a wildcard, the * owner itself
    ("foo.wild.example.com", "A"), ("foo.wild.example.com", "TXT"),
    ("foo.wild.example.com", "MX"), ("x.y.wild.example.com", "A"),
    ("exact.wild.example.com", "A"), ("exact.wild.example.com", "TXT"),
    ("foo.wcname.example.com", "A"), ("x.w2.example.com", "A"), ("y.w2.example.com", "A"),
    ("z.y.w2.example.com", "A"), ("deep.x.w2.example.com", "A"), ("*.wild.example.com", "A"),
    # NXDOMAIN, NODATA, empty non-terminals
    ("nope.example.com", "A"), ("nope.nope.example.com", "AAAA"),
    ("b.c.example.com", "A"), ("c.example.com", "TXT"), ("example.com", "SRV"),
    ("example.org", "MX"), ("nothing.example.org", "A"), ("example.com", 65000),
    ("example.com", "DS"),
    # delegations: referral with glue, without glue, below the cut, glue names, DS at cut
    ("sub.example.com", "A"), ("www.sub.example.com", "A"), ("sub.example.com", "NS"),
    ("ns.sub.example.com", "A"), ("ns.sub.example.com", "NS"), ("sub.example.com", "DS"),
    ("ext.example.com", "A"), ("deep.below.ext.example.com", "MX"),
    # $TTL, $INCLUDE, case preservation, the second zone
    ("short.example.com", "A"), ("host1.example.com", "A"), ("host2.example.com", "AAAA"),
    ("WwW.ExAmPlE.CoM", "A"), ("www.example.org", "A"), ("sip2.example.org", "AAAA"),
    # outside our zones
    ("example.net", "A"), ("com", "SOA"), ("org", "NS"), (".", "NS"),
    # truncation: bigger than 1232 bytes over UDP
    ("big.example.com", "TXT"),
    # ANY: one RRset (RFC 8482), the same one nsd picks, no apex NS in the authority
    ("example.com", "ANY"), ("mail.example.com", "ANY"), ("www.example.com", "ANY"),
    ("foo.wild.example.com", "ANY"), ("sub.example.com", "ANY"), ("quoted.example.com", "ANY"),
    ("_sip._tcp.example.com", "ANY"), ("mx2.example.com", "ANY"), ("nope.example.com", "ANY"),
    ("b.c.example.com", "ANY"), ("big.example.com", "ANY"),
]

CASES = [Case(qname, qtype) for qname, qtype in NAMES_AND_TYPES]
CASES += [
    Case("example.com", "MX", recursion=True),
    Case("example.com", "A", edns=None),
    Case("big.example.com", "TXT", edns=None),
    Case("big.example.com", "TXT", payload=4096),
    Case("big.example.com", "TXT", tcp=True),
    Case("big.example.com", "TXT", edns=None, tcp=True),
    Case("example.com", "MX", payload=100),
    Case("example.com", "MX", payload=512),
    Case("example.com", "A", edns=1),
    Case("nope.example.com", "A", edns=1),
    Case("example.com", "A", dnssec_ok=True),
    Case("example.com", "A", option=True),
    Case("alias.example.com", "A", tcp=True),
    Case("nope.example.com", "A", tcp=True),
    Case("sub.example.com", "A", tcp=True),
    Case("example.com", "ANY", edns=None),
    Case("example.com", "ANY", tcp=True),
    Case("big.example.com", "ANY", edns=None, tcp=True),
]


def records(section: list[dns.rrset.RRset]) -> set[tuple[object, ...]]:
    """A section as a set of records, names and rdata in canonical (lower) case."""
    return {(rrset.name.canonicalize(), rrset.ttl, rrset.rdclass, rrset.rdtype,
             rdata.to_digestable()) for rrset in section for rdata in rrset}


def summary(message: dns.message.Message) -> dict[str, object]:
    return {
        "rcode": dns.rcode.to_text(message.rcode()),
        "flags": dns.flags.to_text(message.flags),
        "edns": (message.edns, message.payload if message.edns >= 0 else None,
                 dns.flags.edns_to_text(message.ednsflags)),
        "answer": records(message.answer),
        "authority": records(message.authority),
        "additional": records(message.additional),
    }


def ask(case: Case, port: int) -> dns.message.Message:
    query = case.message()
    return tcp_query(query, port) if case.tcp else udp_query(query, port)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_same_answer_as_nsd(served: ServedDns, nsd: Nsd, case: Case) -> None:
    ours = summary(ask(case, served.port))
    theirs = summary(ask(case, nsd.port))
    assert ours == theirs


def raw_exchange(wire: bytes, port: int) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)  # only reached when nothing answers at all (a loaded host)
        sock.connect(("127.0.0.1", port))
        sock.send(wire)
        # A follow-up query on the same socket: its answer proves the server is alive and
        # that anything before it was the reply to `wire` (or there was none).
        probe = dns.message.make_query("example.com", "SOA")
        sock.send(probe.to_wire())
        replies = []
        while True:
            data = sock.recv(65535)
            if data[:2] == probe.id.to_bytes(2, "big") and len(data) > 12:
                return replies[0] if replies else None
            replies.append(data)


def _opcode(opcode: int) -> bytes:
    query = dns.message.make_query("example.com", "A")
    query.set_opcode(opcode)
    return query.to_wire()


def _qdcount(wire: bytes, count: int) -> bytes:
    return wire[:4] + count.to_bytes(2, "big") + wire[6:]


_QUERY = dns.message.make_query("example.com", "A", use_edns=0).to_wire()
MALFORMED = {
    "5 bytes": b"\x12\x34\x00\x00\x01",
    "header only": b"\x12\x34\x01\x00" + bytes(8),
    "header, qdcount 1, no question": b"\x12\x34\x01\x00\x00\x01" + bytes(6),
    "truncated name": b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\x07example\x03",
    "qdcount 0 with question": _qdcount(_QUERY, 0),
    "qdcount 2 with one question": _qdcount(_QUERY, 2),
    "ancount without records": _QUERY[:6] + b"\x00\x01" + _QUERY[8:],
    "two OPT records": _QUERY[:11] + b"\x02" + _QUERY[12:] + _QUERY[-11:],
    "response bit set": bytes([_QUERY[0], _QUERY[1], _QUERY[2] | 0x80]) + _QUERY[3:],
    "opcode STATUS": _opcode(dns.opcode.STATUS),
    "opcode IQUERY": _opcode(dns.opcode.IQUERY),
    "opcode UPDATE": _opcode(dns.opcode.UPDATE),
    "opcode 3": _opcode(3),
}


@pytest.mark.parametrize("wire", MALFORMED.values(), ids=list(MALFORMED))
def test_same_reaction_to_malformed_queries_as_nsd(served: ServedDns, nsd: Nsd,
                                                    wire: bytes) -> None:
    """Same rcode (FORMERR, NOTIMP) or the same silence."""
    ours = raw_exchange(wire, served.port)
    theirs = raw_exchange(wire, nsd.port)
    assert (ours is None) == (theirs is None)
    if ours is not None and theirs is not None:
        assert ours[:2] == wire[:2]
        ours_rcode, theirs_rcode = ours[3] & 0x0F, theirs[3] & 0x0F
        assert dns.rcode.to_text(ours_rcode) == dns.rcode.to_text(theirs_rcode)
        assert ours[2] & 0x80  # QR
