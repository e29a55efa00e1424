"""The authoritative answering core, sans I/O: query bytes in, response bytes out.

`Responder.respond(wire, tcp=...)` never touches a socket or a clock. The transport shells
(server.py) feed it each UDP datagram or TCP frame and send what it returns (None means
stay silent).

Theory of operation
-------------------
1. Header checks on the raw bytes, before any parsing: fewer than 12 bytes -> silence
   (there is no ID to answer to); QR set -> silence (never answer a response: that is
   how reflection loops start); an opcode other than QUERY -> NOTIMP.
2. The compiled path (compiled.py): the minimal parser (wire.py) reads the question and
   the OPT record; the answer is assembled from precomputed wire-format sections. This is
   how almost every query is answered, in a few microseconds.
3. What that path does not vouch for goes to dnspython, as before it existed (counted in
   the statistics by reason): any parse error, or a question count other than one ->
   FORMERR (a bare 12-byte header echoing ID, opcode and RD); EDNS version above 0 ->
   BADVERS; otherwise the lookup (lookup.py) rendered by dnspython.

Both paths give the same answers (tests/dns/test_compiled.py checks it on generated zones
and queries), by these rules:
- EDNS (RFC 6891): with EDNS the response carries an OPT advertising our own payload size
  (`max_udp_payload`, 1232 by default, the DNS flag day 2020 value) and echoing the DO
  bit; options in the query are ignored (no cookies, no client subnet). The UDP size
  limit is max(512, min(client's payload, ours)); 512 without EDNS; 65535 over TCP.
- Class other than IN, or a zone transfer (AXFR/IXFR) -> REFUSED; a name outside every
  zone -> REFUSED, without AA.
- The lookup: see lookup.py (RFC 1034 4.3.2, wildcards, CNAME chains, referrals,
  negative answers, ANY as one RRset per RFC 8482).
- Size: additional RRsets that do not fit are dropped silently; if an answer or authority
  RRset does not fit, the response is sent with TC set and empty sections (the client
  retries over TCP instead of using a partial answer).

The result for a given query is a pure function of its bytes (except the ID) and of the
zone set, which is what lets the server cache encoded responses (server.py).
"""

from __future__ import annotations

import logging
import struct

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from muxio.handlers.dns.compiled import DEFAULT_MAX_TEMPLATES, CompiledZones
from muxio.handlers.dns.lookup import MAX_CNAME_CHAIN, Resolution, lookup
from muxio.handlers.dns.wire import parse_query
from muxio.handlers.dns.zones import ZoneSet

__all__ = ["DEFAULT_MAX_UDP_PAYLOAD", "MAX_CNAME_CHAIN", "Resolution", "Responder",
           "header_only", "lookup"]

log = logging.getLogger("muxio.dns")

DEFAULT_MAX_UDP_PAYLOAD = 1232
"""Largest UDP response we send and the payload size we advertise (DNS flag day 2020)."""
MIN_UDP_PAYLOAD = 512
MAX_TCP_MESSAGE = 65535

_HEADER = struct.Struct("!HHHHHH")
_QR = 0x8000
_OPCODE_MASK = 0x7800
_RD = 0x0100
_QR_BYTE = _QR >> 8
_OPCODE_BYTE = _OPCODE_MASK >> 8
_TC = 0x0200
_TRANSFER_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
CACHE = 2
"""`respond` outcome: an answer worth caching under the query's bytes."""
ANSWER = 1
"""`respond` outcome: an answer not worth caching (a random name below an encloser)."""
ERROR = 0
"""`respond` outcome: FORMERR or NOTIMP (never cached: random bytes must not flush the
cache), or silence."""
_PARSE_ERRORS = (dns.exception.DNSException, ValueError, struct.error, IndexError,
                 UnicodeError)
"""What dnspython raises on malformed input (FormError and friends are DNSExceptions;
the others come from rdata parsers handed hostile bytes)."""


def header_only(wire: bytes, rcode: int) -> bytes:
    """A 12-byte response to `wire`'s header: same ID and opcode, RD copied, no sections
    (for FORMERR, NOTIMP: nothing else of the query can be trusted or is understood)."""
    query_id, flags = struct.unpack_from("!HH", wire)
    return _HEADER.pack(query_id, _QR | (flags & (_OPCODE_MASK | _RD)) | (rcode & 0xF),
                        0, 0, 0, 0)


class Responder:
    """Builds the response to one query from a zone set (see the module docstring)."""

    __slots__ = ("zones", "max_udp_payload", "rendered", "cache_size", "compiled",
                 "fallback_answers", "_opt_plain", "_opt_dnssec_ok")

    def __init__(self, zones: ZoneSet, max_udp_payload: int = DEFAULT_MAX_UDP_PAYLOAD,
                 cache_size: int = 10_000, max_templates: int = DEFAULT_MAX_TEMPLATES,
                 ) -> None:
        if not MIN_UDP_PAYLOAD <= max_udp_payload <= MAX_TCP_MESSAGE:
            raise ValueError(f"max_udp_payload must be within {MIN_UDP_PAYLOAD}-"
                             f"{MAX_TCP_MESSAGE}, got {max_udp_payload}")
        self.zones = zones
        self.max_udp_payload = max_udp_payload
        self.cache_size = cache_size
        self.compiled = CompiledZones(zones, max_templates)
        self.fallback_answers = 0
        """Queries answered by dnspython (not the compiled path), FORMERR excluded."""
        # Our OPT record: root owner, type 41, class = our payload size, TTL = extended
        # rcode 0, version 0, flags (DO echoed), no options.
        payload = max_udp_payload.to_bytes(2, "big")
        self._opt_plain = b"\x00\x00\x29" + payload + b"\x00\x00\x00\x00\x00\x00"
        self._opt_dnssec_ok = b"\x00\x00\x29" + payload + b"\x00\x00\x80\x00\x00\x00"
        self.rendered: dict[tuple[object, ...], bytes] = {}
        """For the dnspython path: what a response depends on -> the response after its
        ID, so that queries that go to dnspython only for their EDNS options are parsed
        but not rendered again."""

    def respond(self, wire: bytes, *, tcp: bool) -> tuple[bytes | None, int]:
        """(response bytes or None for silence, outcome: CACHE, ANSWER or ERROR)."""
        if len(wire) < 12:
            return None, ERROR
        flags = wire[2]
        if flags & _QR_BYTE:
            return None, ERROR
        if flags & _OPCODE_BYTE:
            return header_only(wire, dns.rcode.NOTIMP), ERROR
        parsed = parse_query(wire)
        if parsed is not None:
            payload, dnssec_ok = parsed[3], parsed[4]
            if tcp:
                limit = MAX_TCP_MESSAGE
            elif payload < 0:
                limit = MIN_UDP_PAYLOAD
            else:
                limit = max(MIN_UDP_PAYLOAD, min(payload, self.max_udp_payload))
            opt = b"" if payload < 0 else self._opt_dnssec_ok if dnssec_ok else \
                self._opt_plain
            response, cacheable = self.compiled.answer(wire, parsed, limit, opt)
            if response is not None:
                return response, CACHE if cacheable else ANSWER
        else:
            self.compiled.fallbacks["wire"] += 1
        return self._respond_with_dnspython(wire, tcp)

    def respond_with_dnspython(self, wire: bytes, *, tcp: bool) -> tuple[bytes | None, int]:
        """`respond` without the compiled path: the reference the compiled path is tested
        against (tests/dns/test_compiled.py)."""
        if len(wire) < 12:
            return None, ERROR
        flags = (wire[2] << 8) | wire[3]
        if flags & _QR:
            return None, ERROR
        if flags & _OPCODE_MASK:
            return header_only(wire, dns.rcode.NOTIMP), ERROR
        return self._respond_with_dnspython(wire, tcp)

    def _respond_with_dnspython(self, wire: bytes, tcp: bool) -> tuple[bytes | None, int]:
        try:
            query = dns.message.from_wire(wire)
        except _PARSE_ERRORS as exc:
            log.debug("FORMERR: %s", exc)
            return header_only(wire, dns.rcode.FORMERR), ERROR
        if len(query.question) != 1:
            return header_only(wire, dns.rcode.FORMERR), ERROR
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
        self.fallback_answers += 1
        if rendered is not None:
            return id_bytes + rendered, CACHE
        response = self._render(query, limit)
        if self.cache_size:
            if len(self.rendered) >= self.cache_size:
                del self.rendered[next(iter(self.rendered))]
            self.rendered[key] = response[2:]
        return response, CACHE

    def _render(self, query: dns.message.Message, limit: int) -> bytes:
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
