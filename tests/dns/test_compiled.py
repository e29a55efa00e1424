"""The compiled answer path against dnspython's, in memory: same bytes for every query.

The compiled path (muxio/handlers/dns/compiled.py) reuses a rendered template for every
query with the same key; these tests generate zones (wildcards, delegations with glue, DS
at cuts, CNAME chains and loops across zones, a child zone shadowing its parent, RRsets
too big for 512 bytes) and queries (existing names, random labels at every depth, mixed
case, every rcode path, EDNS on and off with small payloads, the DO bit, TCP), several per
zone so that templates are reused across queries, and compare each response with the one
`Responder.respond_with_dnspython` builds. The contract is "identical decoded messages";
the design gives identical bytes (templates are dnspython's own rendering for the same
key), so that is what is asserted.

The minimal wire parser is fuzzed the same way: mutated and hand-made malformed queries
(pointer loops, truncation at every byte, bad OPT records and options) must get exactly
what the dnspython path gives: FORMERR, NOTIMP, silence or the same answer; never an
exception.
"""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from muxio.handlers.dns import Responder, Zone, ZoneSet, load_zones
from muxio.handlers.dns.wire import check_name, parse_query
from tests.dns.helpers import ZONE_FILES

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_SETTINGS = settings(SETTINGS, max_examples=400)

ORIGIN = "z.test."
CHILD = "a.z.test."
OTHER = "other.test."
LABELS = ["a", "b", "www", "mail", "ns", "*", "c"]
HEAD = ("$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 900 604800 60\n@ IN NS ns1\n"
        "@ IN NS ns.out.test.\nns1 IN A 192.0.2.1\nns1 IN AAAA 2001:db8::1\n")
RECORD_KINDS = ["A", "AAAA", "TXT", "MX", "CNAME", "NS", "SRV", "DS", "big-TXT", "many-A",
                "many-MX", "PTR"]
QTYPES = ["A", "AAAA", "TXT", "MX", "CNAME", "NS", "SOA", "SRV", "DS", "DNSKEY", "ANY",
          "PTR", "CAA", "TYPE65000", "AXFR"]

relative_names = st.lists(st.sampled_from(LABELS), min_size=1, max_size=3).map(".".join)


@st.composite
def targets(draw: st.DrawFn) -> str:
    """A name RDATA points at: in the zone (existing or not), in another zone, outside."""
    return draw(st.one_of(
        relative_names.map(lambda name: f"{name}.{ORIGIN}"),
        relative_names.map(lambda name: f"{name}.{OTHER}"),
        st.sampled_from([ORIGIN, f"ns1.{ORIGIN}", "x.out.test.", f"nowhere.{ORIGIN}"])))


@st.composite
def records(draw: st.DrawFn, owner: str) -> list[str]:
    kind = draw(st.sampled_from(RECORD_KINDS))
    ttl = draw(st.sampled_from([60, 300, 3600]))
    prefix = f"{owner} {ttl} IN"
    if kind == "A":
        return [f"{prefix} A 192.0.2.{draw(st.integers(1, 254))}"]
    if kind == "AAAA":
        return [f"{prefix} AAAA 2001:db8::{draw(st.integers(1, 0xffff)):x}"]
    if kind == "TXT":
        return [f'{prefix} TXT "{draw(st.text("abc xyz", max_size=20))}"']
    if kind == "MX":
        return [f"{prefix} MX {draw(st.integers(0, 50))} {draw(targets())}"]
    if kind == "CNAME":
        return [f"{prefix} CNAME {draw(targets())}"]
    if kind == "NS":
        return [f"{prefix} NS {draw(targets())}", f"{prefix} NS ns.out.test."]
    if kind == "SRV":
        return [f"{prefix} SRV 10 5 5060 {draw(targets())}"]
    if kind == "DS":
        return [f"{prefix} DS 12345 8 2 " + "ab" * 32]
    if kind == "PTR":
        return [f"{prefix} PTR {draw(targets())}"]
    if kind == "big-TXT":
        return [f'{prefix} TXT "{"x" * 200}" "{"y" * 200}" "{"z" * 150}"']
    if kind == "many-A":
        return [f"{prefix} A 198.51.100.{index}" for index in range(draw(st.integers(20, 45)))]
    # many-MX: additional addresses that may not all fit
    return [f"{prefix} MX {index} {name}.{ORIGIN}"
            for index, name in enumerate(draw(st.lists(relative_names, min_size=5,
                                                      max_size=20, unique=True)))]


def zone_of(origin: str, lines: list[str]) -> Zone:
    try:
        zone = dns.zone.from_text(HEAD + "\n".join(lines) + "\n", origin=origin,
                                  relativize=False, check_origin=True)
    except dns.exception.DNSException:
        reject()  # e.g. a CNAME beside other data: not a zone
    return Zone.from_dnspython(zone)


@st.composite
def zone_sets(draw: st.DrawFn) -> ZoneSet:
    lines: list[str] = []
    for owner in draw(st.lists(relative_names, min_size=1, max_size=12)):
        lines += draw(records(f"{owner}.{ORIGIN}"))
    zones = [zone_of(ORIGIN, lines)]
    if draw(st.booleans()):
        child_lines: list[str] = []
        for owner in draw(st.lists(relative_names, max_size=5)):
            child_lines += draw(records(f"{owner}.{CHILD}"))
        zones.append(zone_of(CHILD, child_lines))
    if draw(st.booleans()):
        other_lines: list[str] = []
        for owner in draw(st.lists(relative_names, max_size=5)):
            other_lines += draw(records(f"{owner}.{OTHER}"))
        zones.append(zone_of(OTHER, other_lines))
    return ZoneSet(zones)


def mixed_case(rng: random.Random, name: str) -> str:
    return "".join(char.upper() if rng.random() < 0.5 else char for char in name)


def random_query(rng: random.Random, names: list[str]) -> tuple[bytes, bool]:
    """One query (wire, over TCP?): plain random choices, so that a zone's 25 queries cost
    one draw (hypothesis draws are slow); the failure message shows the query."""
    base = rng.choice([*names, "out.test.", "."])
    prefix = rng.choices(["q", "rr", "xyz", "a", "*", "www", "x" * 40], k=rng.choice(
        [0, 0, 1, 1, 2, 3]))
    qname = base if not prefix else ".".join(prefix) + ("." + base if base != "." else ".")
    qtype = dns.rdatatype.from_text(rng.choice(QTYPES))
    rdclass = dns.rdataclass.CH if rng.random() < 0.05 else dns.rdataclass.IN
    edns = rng.choice([None, 0, 0, 1])
    query = dns.message.make_query(
        mixed_case(rng, qname), qtype, rdclass=rdclass,
        use_edns=edns if edns is not None else False,
        payload=rng.choice([0, 100, 512, 600, 900, 1232, 4096]),
        want_dnssec=edns is not None and rng.random() < 0.5, id=rng.randrange(0x10000))
    if rng.random() < 0.5:
        query.flags &= ~dns.flags.RD
    return query.to_wire(), rng.random() < 0.3


def describe(wire: bytes | None) -> str:
    if wire is None:
        return "silence"
    try:
        return dns.message.from_wire(wire).to_text()
    except Exception as exc:  # a malformed reply shows as its error
        return f"{exc!r}: {wire!r}"


def assert_same(responder: Responder, wire: bytes, tcp: bool) -> bool:
    """Whether the compiled path answered (else dnspython did, or nobody)."""
    compiled = responder.compiled.answered
    ours, _ = responder.respond(wire, tcp=tcp)
    reference, _ = responder.respond_with_dnspython(wire, tcp=tcp)
    assert ours == reference, (f"query {describe(wire)}\nover {'TCP' if tcp else 'UDP'}\n"
                               f"compiled:\n{describe(ours)}\n\ndnspython:\n"
                               f"{describe(reference)}")
    return responder.compiled.answered > compiled


@SETTINGS
@given(data=st.data())
def test_compiled_answers_equal_dnspython_answers(data: st.DataObject) -> None:
    zones = data.draw(zone_sets(), label="zones")
    responder = Responder(zones, cache_size=0)
    names = sorted({name.to_text() for zone in zones.values() for name in zone.names})
    rng = random.Random(data.draw(st.integers(0, 2 ** 32), label="seed of the queries"))
    for _ in range(40):
        wire, tcp = random_query(rng, names)
        event("compiled" if assert_same(responder, wire, tcp) else "dnspython")


def test_the_compiled_path_answers_the_usual_queries() -> None:
    """Not a fallback in disguise: the test zones' queries are compiled."""
    responder = Responder(load_zones(ZONE_FILES), cache_size=0)
    for qname, qtype in [("example.com", "MX"), ("foo.wild.example.com", "TXT"),
                         ("x.y.nope.example.com", "A"), ("ftp.sub.example.com", "A"),
                         ("alias.example.com", "A"), ("example.net", "A"),
                         ("big.example.com", "TXT"), ("example.com", "ANY")]:
        for edns in (False, 0):
            wire = dns.message.make_query(qname, qtype, use_edns=edns).to_wire()
            assert_same(responder, wire, tcp=False)
            assert_same(responder, wire, tcp=True)
    statistics = responder.compiled.statistics()
    assert statistics["compiled"] == 32
    assert sum(count for key, count in statistics.items() if key.startswith("fallback")) == 0


def test_mentioned_names_go_to_dnspython() -> None:
    """A name that RDATA mentions without it existing (here the SOA RNAME's and a dangling
    CNAME's): dnspython would point into the query's own labels for it."""
    responder = Responder(load_zones(ZONE_FILES), cache_size=0)
    for qname in ("x.hostmaster.example.com", "nowhere.example.com"):
        assert_same(responder, dns.message.make_query(qname, "A").to_wire(), tcp=False)
    assert responder.compiled.fallbacks["mentioned"] == 2


# -- the wire parser, fuzzed -----------------------------------------------------------------

_VALID = [
    dns.message.make_query(name, rdtype, use_edns=edns, payload=1232, want_dnssec=dnssec,
                           options=options).to_wire()
    for name, rdtype, edns, dnssec, options in [
        ("example.com", "A", 0, False, None), ("www.example.com", "A", False, False, None),
        ("big.example.com", "TXT", 0, True, None),
        ("foo.wild.example.com", "MX", 0, False,
         [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")]),
        ("_sip._tcp.example.com", "SRV", 0, False, [dns.edns.GenericOption(65001, b"x")]),
        ("a.b.c.nope.example.com", "AAAA", 0, False, [dns.edns.ECSOption("192.0.2.0", 24)]),
        ("example.net", "A", False, False, None),
    ]
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    wire = bytearray(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(0, len(wire) - 1)))
        if kind == "flip" and wire:
            wire[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and wire:
            wire[position] = draw(st.sampled_from([0, 1, 0x29, 0x3f, 0x40, 0xc0, 0xc0 | 12,
                                                   0xff, draw(st.integers(0, 255))]))
        elif kind == "insert":
            wire[position:position] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "delete":
            del wire[position:position + draw(st.integers(1, 6))]
        else:
            del wire[draw(st.integers(0, len(wire))):]
    return bytes(wire)


def _header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 0x4242, 0x0100, qd, an, ns, ar)


_QUESTION = b"\x07example\x03com\x00\x00\x01\x00\x01"
_OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00"
HANDMADE = {
    "pointer loop": _header() + b"\xc0\x0c\x00\x01\x00\x01",
    "pointer forward": _header() + b"\xc0\x20\x00\x01\x00\x01",
    "pointer after a label": _header() + b"\x01a\xc0\x0c\x00\x01\x00\x01",
    "label type 0x40": _header() + b"\x41" + b"a" * 1 + b"\x00\x00\x01\x00\x01",
    "name of 256 bytes": _header() + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f"
    + b"c" * 63 + b"\x3f" + b"d" * 63 + b"\x00\x00\x01\x00\x01",
    "name of 255 bytes": _header() + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f"
    + b"c" * 63 + b"\x3d" + b"d" * 61 + b"\x00\x00\x01\x00\x01",
    "no qtype": _header() + b"\x07example\x03com\x00\x00",
    "trailing byte": _header() + _QUESTION + b"\x00",
    "OPT, rdlen past the end": _header(ar=1) + _QUESTION + _OPT + b"\x00\x04",
    "OPT, option past the end": _header(ar=1) + _QUESTION + _OPT + b"\x00\x04\xfd\xe9\x00\x09",
    "OPT, 3 option bytes": _header(ar=1) + _QUESTION + _OPT + b"\x00\x03\xfd\xe9\x00",
    "OPT, cookie of 5": _header(ar=1) + _QUESTION + _OPT + b"\x00\x09\x00\x0a\x00\x05abcde",
    "OPT, cookie of 12": _header(ar=1) + _QUESTION + _OPT + b"\x00\x10\x00\x0a\x00\x0c"
    + b"a" * 12,
    "OPT, cookie of 16": _header(ar=1) + _QUESTION + _OPT + b"\x00\x14\x00\x0a\x00\x10"
    + b"a" * 16,
    "OPT, bad client subnet": _header(ar=1) + _QUESTION + _OPT + b"\x00\x05\x00\x08\x00\x01\x00",
    "OPT version 1": _header(ar=1) + _QUESTION + b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00",
    "OPT not at the root": _header(ar=1) + _QUESTION + b"\x01a" + _OPT + b"\x00\x00",
    "OPT with an extended rcode": _header(ar=1) + _QUESTION
    + b"\x00\x00\x29\x04\xd0\x01\x00\x00\x00\x00\x00",
    "two OPT": _header(ar=2) + _QUESTION + (_OPT + b"\x00\x00") * 2,
    "A record in additional": _header(ar=1) + _QUESTION
    + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x7f\x00\x00\x01",
    "answer record in a query": _header(an=1) + _QUESTION
    + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x7f\x00\x00\x01",
    "root label inside the name": _header() + b"\x01a\x00\x07example\x03com\x00\x00\x01\x00\x01",
    "pointer before the root": _header() + b"\x01a\xc0\x0c\x00\x00\x01\x00\x01",
    "two bytes after the question": _header() + _QUESTION + b"\x00\x00",
    "an option that ends like an OPT": _header(ar=1) + _QUESTION + _OPT + b"\x00\x0f\xfd\xe9"
    + b"\x00\x0b" + _OPT + b"\x00\x00",
    "class CH with a pointer": _header() + b"\xc0\x0c\x00\x01\x00\x03",
    "two questions": _header(qd=2) + _QUESTION * 2,
    "no question": _header(qd=0),
}


@pytest.mark.parametrize("wire", HANDMADE.values(), ids=list(HANDMADE))
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_malformed_queries_get_what_dnspython_gives(wire: bytes, tcp: bool) -> None:
    responder = Responder(load_zones(ZONE_FILES), cache_size=0)
    assert_same(responder, wire, tcp)


def test_every_truncation_of_valid_queries() -> None:
    responder = Responder(load_zones(ZONE_FILES), cache_size=0)
    for wire in _VALID:
        for end in range(len(wire) + 1):
            assert_same(responder, wire[:end], tcp=False)


@FUZZ_SETTINGS
@given(wire=st.one_of(mutated(), st.binary(max_size=80)), tcp=st.booleans())
def test_mutated_queries_get_what_dnspython_gives(wire: bytes, tcp: bool) -> None:
    responder = RESPONDER
    event("compiled" if assert_same(responder, wire, tcp) else "dnspython")
    parsed = parse_query(wire) if len(wire) >= 12 else None
    if parsed is not None and check_name(wire, parsed[0]):
        # What the parser vouched for, dnspython parses the same way.
        query = dns.message.from_wire(wire)
        _, qtype, qclass, payload, dnssec_ok = parsed
        assert dns.name.from_wire(wire, 12)[0] == query.question[0].name
        assert (qtype, qclass) == (query.question[0].rdtype, query.question[0].rdclass)
        assert payload == (query.payload if query.edns >= 0 else -1)
        assert bool(dnssec_ok) == bool(query.ednsflags & dns.flags.DO)


RESPONDER = Responder(load_zones(ZONE_FILES), cache_size=0)
