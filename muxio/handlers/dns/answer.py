"""The authoritative answering core, sans I/O: query bytes in, response bytes out.

`Responder.respond(wire, tcp=...)` never touches a socket or a clock. The transport shells
(server.py) feed it each UDP datagram or TCP frame and send what it returns (None means
stay silent).

Theory of operation
-------------------
1. Header checks on the raw bytes, before any parsing: fewer than 12 bytes -> silence
   (there is no ID to answer to); QR set -> silence (never answer a response: that is
   how reflection loops start); an opcode other than QUERY -> NOTIMP.
2. Parse with dnspython; any parse error, or a question count other than one -> FORMERR
   (a bare 12-byte header echoing ID, opcode and RD).
3. EDNS (RFC 6891): an OPT version above 0 -> BADVERS. With EDNS the response carries an
   OPT advertising our own payload size (`max_udp_payload`, 1232 by default, the DNS
   flag day 2020 value) and echoing the DO bit. The UDP size limit is
   max(512, min(client's payload, ours)); 512 without EDNS; 65535 over TCP.
4. Class other than IN, or a zone transfer (AXFR/IXFR) -> REFUSED; a name outside every
   zone -> REFUSED, without AA.
5. The lookup (RFC 1034 4.3.2, RFC 4592 for wildcards), in the closest enclosing zone:
   - below a delegation point (NS below the apex): a referral, without AA: the NS set
     in the authority section, glue addresses in the additional section;
   - the name exists and has the type: the answer; the zone's apex NS in the authority
     section (unless that is the answer); addresses of NS/MX/SRV targets in the zone in
     the additional section (nsd does the same, which the differential test checks);
   - the name has a CNAME: the CNAME, then the lookup goes on at its target, in any of
     our zones (loops and chains longer than `MAX_CNAME_CHAIN` stop);
   - the name exists without the type, or is an empty non-terminal: NODATA;
   - the name does not exist: a wildcard `*.<closest encloser>` synthesises it, else
     NXDOMAIN. NODATA and NXDOMAIN carry the SOA in the authority section with the
     negative TTL min(SOA TTL, SOA MINIMUM) (RFC 2308).
6. Rendering with dnspython. Additional records that do not fit are dropped silently;
   if the answer or authority section does not fit, the response is sent with TC set and
   empty sections (the client retries over TCP).

The result for a given query is a pure function of its bytes (except the ID) and of the
zone set, which is what lets the server cache encoded responses (server.py).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.NS
import dns.rdtypes.IN.SRV
import dns.rrset

from muxio.handlers.dns.zones import Zone, ZoneSet

log = logging.getLogger("muxio.dns")

DEFAULT_MAX_UDP_PAYLOAD = 1232
"""Largest UDP response we send and the payload size we advertise (DNS flag day 2020)."""
MAX_CNAME_CHAIN = 16
"""CNAMEs followed for one query before giving up (loops stop earlier, when detected)."""
MIN_UDP_PAYLOAD = 512
MAX_TCP_MESSAGE = 65535

_HEADER = struct.Struct("!HHHHHH")
_QR = 0x8000
_OPCODE_MASK = 0x7800
_RD = 0x0100
_TC = 0x0200
_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_CNAME = dns.rdatatype.CNAME
_NS = dns.rdatatype.NS
_ANY = dns.rdatatype.ANY
_TARGET_TYPES = frozenset({dns.rdatatype.NS, dns.rdatatype.MX, dns.rdatatype.SRV})
_TRANSFER_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
_PARSE_ERRORS = (dns.exception.DNSException, ValueError, struct.error, IndexError,
                 UnicodeError)
"""What dnspython raises on malformed input (FormError and friends are DNSExceptions;
the others come from rdata parsers handed hostile bytes)."""


class Resolution:
    """The outcome of a lookup, before rendering."""

    __slots__ = ("rcode", "authoritative", "answer", "authority", "additional")

    def __init__(self, rcode: dns.rcode.Rcode, authoritative: bool,
                 answer: list[dns.rrset.RRset] | None = None,
                 authority: list[dns.rrset.RRset] | None = None,
                 additional: list[dns.rrset.RRset] | None = None) -> None:
        self.rcode = rcode
        self.authoritative = authoritative
        self.answer = answer or []
        self.authority = authority or []
        self.additional = additional or []

    def __repr__(self) -> str:
        return (f"<Resolution {self.rcode.name} aa={self.authoritative} "
                f"answer={len(self.answer)} authority={len(self.authority)} "
                f"additional={len(self.additional)}>")


def _owned_by(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    """`rrset` with `owner` as its name (wildcard synthesis, or the query's spelling)."""
    if rrset.name is owner:
        return rrset
    return dns.rrset.from_rdata_list(owner, rrset.ttl, list(rrset))


def _targets(rrset: dns.rrset.RRset) -> list[dns.name.Name]:
    rdtype = rrset.rdtype
    if rdtype == _NS:
        return [rdata.target for rdata in rrset
                if isinstance(rdata, dns.rdtypes.ANY.NS.NS)]
    if rdtype == dns.rdatatype.MX:
        return [rdata.exchange for rdata in rrset
                if isinstance(rdata, dns.rdtypes.ANY.MX.MX)]
    if rdtype == dns.rdatatype.SRV:
        return [rdata.target for rdata in rrset
                if isinstance(rdata, dns.rdtypes.IN.SRV.SRV)]
    return []


def _addresses(zone: Zone, names: Iterable[dns.name.Name],
               answer: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """A then AAAA RRsets of `names` held in `zone` (glue included), not already in the
    answer section."""
    present = {(rrset.name, rrset.rdtype) for rrset in answer}
    unique: list[dns.name.Name] = []
    for name in names:
        if name not in unique and name.is_subdomain(zone.origin):
            unique.append(name)
    additional = []
    for rdtype in (_A, _AAAA):
        for name in unique:
            node = zone.rrsets.get(name)
            if node is not None and rdtype in node and (name, rdtype) not in present:
                additional.append(node[rdtype])
                present.add((name, rdtype))
    return additional


def lookup(zones: ZoneSet, qname: dns.name.Name, qtype: int) -> Resolution:
    """Answer (qname, qtype, IN) from `zones`: the RFC 1034 algorithm for an authoritative
    server, with wildcards (RFC 4592) and CNAME chains across our zones."""
    answer: list[dns.rrset.RRset] = []
    visited: set[dns.name.Name] = set()
    name = qname
    first = True
    while True:
        zone = zones.find(name)
        if zone is None:
            if first:
                return Resolution(dns.rcode.REFUSED, False)
            return Resolution(dns.rcode.NOERROR, True, answer)  # a CNAME leaving our zones
        cut = zone.cut_covering(name, qtype)
        if cut is not None:
            delegation = zone.rrsets[cut][_NS]
            return Resolution(dns.rcode.NOERROR, not first, answer, [delegation],
                              _addresses(zone, _targets(delegation), answer))
        node = zone.rrsets.get(name)
        if node is None:
            if name in zone.names:  # an empty non-terminal
                return Resolution(dns.rcode.NOERROR, True, answer, [zone.negative_soa])
            wildcard = zone.wildcard_for(name)
            if wildcard is None:
                return Resolution(dns.rcode.NXDOMAIN, True, answer, [zone.negative_soa])
            node = zone.rrsets[wildcard]
        if qtype == _ANY:
            found = [_owned_by(rrset, name) for rrset in node.values()]
            return _positive(zone, answer + found, found)
        rrset = node.get(qtype)
        if rrset is not None:
            found = [_owned_by(rrset, name)]
            return _positive(zone, answer + found, found)
        cname = node.get(_CNAME)
        if cname is None:
            return Resolution(dns.rcode.NOERROR, True, answer, [zone.negative_soa])
        answer.append(_owned_by(cname, name))
        visited.add(name)
        rdata = cname[0]
        assert isinstance(rdata, dns.rdtypes.ANY.CNAME.CNAME)
        name = rdata.target
        first = False
        if name in visited or len(answer) >= MAX_CNAME_CHAIN:
            return Resolution(dns.rcode.NOERROR, True, answer)


def _positive(zone: Zone, answer: list[dns.rrset.RRset],
              found: list[dns.rrset.RRset]) -> Resolution:
    apex_ns = zone.apex_ns
    answers_apex_ns = any(rrset.rdtype == _NS and rrset.name == apex_ns.name
                          for rrset in found)
    authority = [] if answers_apex_ns else [apex_ns]
    targets: list[dns.name.Name] = []
    for rrset in found:
        if rrset.rdtype in _TARGET_TYPES:
            targets.extend(_targets(rrset))
    for rrset in authority:
        targets.extend(_targets(rrset))
    return Resolution(dns.rcode.NOERROR, True, answer, authority,
                      _addresses(zone, targets, answer))


def header_only(wire: bytes, rcode: int) -> bytes:
    """A 12-byte response to `wire`'s header: same ID and opcode, RD copied, no sections
    (for FORMERR, NOTIMP: nothing else of the query can be trusted or is understood)."""
    query_id, flags = struct.unpack_from("!HH", wire)
    return _HEADER.pack(query_id, _QR | (flags & (_OPCODE_MASK | _RD)) | (rcode & 0xF),
                        0, 0, 0, 0)


class Responder:
    """Builds the response to one query from a zone set (see the module docstring)."""

    __slots__ = ("zones", "max_udp_payload", "rendered", "cache_size")

    def __init__(self, zones: ZoneSet, max_udp_payload: int = DEFAULT_MAX_UDP_PAYLOAD,
                 cache_size: int = 10_000) -> None:
        if not MIN_UDP_PAYLOAD <= max_udp_payload <= MAX_TCP_MESSAGE:
            raise ValueError(f"max_udp_payload must be within {MIN_UDP_PAYLOAD}-"
                             f"{MAX_TCP_MESSAGE}, got {max_udp_payload}")
        self.zones = zones
        self.max_udp_payload = max_udp_payload
        self.cache_size = cache_size
        self.rendered: dict[tuple[object, ...], bytes] = {}
        """What a response depends on -> the response after its ID. Hit by queries that
        differ from an earlier one in more than the ID (an EDNS cookie, a padding option)
        and so miss the server's raw-bytes cache: they are parsed, but not rendered."""

    def respond(self, wire: bytes, *, tcp: bool) -> tuple[bytes | None, bool]:
        """(response bytes or None for silence, whether the response may be cached for
        identical query bytes)."""
        if len(wire) < 12:
            return None, False
        flags = (wire[2] << 8) | wire[3]
        if flags & _QR:
            return None, False
        if flags & _OPCODE_MASK:
            return header_only(wire, dns.rcode.NOTIMP), False
        try:
            query = dns.message.from_wire(wire)
        except _PARSE_ERRORS as exc:
            log.debug("FORMERR: %s", exc)
            return header_only(wire, dns.rcode.FORMERR), False
        if len(query.question) != 1:
            return header_only(wire, dns.rcode.FORMERR), False
        question = query.question[0]
        if query.edns >= 0:
            limit = max(MIN_UDP_PAYLOAD, min(query.payload, self.max_udp_payload))
        else:
            limit = MIN_UDP_PAYLOAD
        if tcp:
            limit = MAX_TCP_MESSAGE
        # Everything the response depends on; the name as spelled (its case is echoed).
        key = (question.name.to_wire(), question.rdtype, question.rdclass,
               query.flags & _RD, query.edns, query.ednsflags & dns.flags.DO, limit)
        id_bytes = wire[:2]
        rendered = self.rendered.get(key)
        if rendered is not None:
            return id_bytes + rendered, True
        response = self._respond(query, limit)
        if self.cache_size:
            if len(self.rendered) >= self.cache_size:
                del self.rendered[next(iter(self.rendered))]
            self.rendered[key] = response[2:]
        return response, True

    def _respond(self, query: dns.message.Message, limit: int) -> bytes:
        question = query.question[0]
        response = dns.message.Message(id=query.id)
        response.flags = _QR | (query.flags & _RD)
        response.question = [question]
        if query.edns >= 0:
            response.use_edns(0, query.ednsflags & dns.flags.DO, self.max_udp_payload)
            if query.edns > 0:
                response.set_rcode(dns.rcode.BADVERS)
                return response.to_wire()
        if question.rdclass != dns.rdataclass.IN or question.rdtype in _TRANSFER_TYPES:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        result = lookup(self.zones, question.name, question.rdtype)
        if result.authoritative:
            response.flags |= dns.flags.AA
        response.set_rcode(result.rcode)
        response.answer = result.answer
        response.authority = result.authority
        response.additional = result.additional
        # Zone file order, not dnspython's default shuffle: a response is then a function
        # of the query, which is what makes caching it exact.
        wire = response.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
        if wire[2] & (_TC >> 8):
            # The answer or authority section did not fit: send none of it, with TC, so
            # that the client asks again over TCP instead of using a partial answer.
            response.answer = []
            response.authority = []
            response.additional = []
            response.flags |= dns.flags.TC
            wire = response.to_wire(max_size=limit, want_shuffle=False)
        return wire
