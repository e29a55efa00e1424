"""The compiled answer path: answer a query with a few dict lookups and one bytes join.

Answering with dnspython costs ~200 us a query (parse into objects, look up, render with
name compression): one client sending distinct random names (a "water torture" flood, or
simply a cold cache) then saturates a core at ~5k q/s. nsd answers the same in ~5 us
because it precomputes answers in wire format. This module does the same in Python's
terms:

At zone load (`CompiledZones.__init__`), a table of every name that exists in the zone
set, in lowercase wire format, each entry mapped to True; names that appear in RDATA
(NS, MX, CNAME targets, SOA names...) without existing are mapped to False (see below).

Per query (`answer`), after `wire.parse_query` read the question with bytes indexing:
1. The lowercase qname is looked up in the table. Present: the answer depends only on
   (qname, qtype). Absent: the suffixes are tried from the longest down; the first one
   present is the closest encloser C, and the answer depends only on (C, qtype, length
   of the labels above C): below C nothing exists, so the lookup can only end at C or
   above (a referral at a cut above, a wildcard `*.C`, NXDOMAIN with C's zone SOA), and
   every name the answer holds is either the qname itself (a compression pointer to
   offset 12, whatever its spelling or labels) or a fixed name of the zone data, which
   dnspython compresses against C's suffixes in the question (whose offsets depend only
   on the length above C). No suffix present: the name is in none of our zones (REFUSED).
2. That key finds a rendered template: the answer, authority and additional sections in
   wire format, rendered once by dnspython from `lookup.lookup` for the first query with
   that key (so the two paths cannot disagree on content), with the boundary of every
   RRset, the rcode and AA.
3. The response is the query's ID, the flags (RD copied), the counts, the query's own
   question bytes (its 0x20 case kept, at offset 12 where the template's pointers expect
   it), the template's sections and, with EDNS, our OPT record (payload, DO echoed).
   When it does not fit the size limit, the RRsets that fit are kept as dnspython keeps
   them: dropping whole additional RRsets silently, or, when an answer or authority RRset
   does not fit, no section at all and TC set.

Exact by construction: a template is dnspython's own rendering of a query with the same
key, and a response differs from it only in bytes that dnspython copies from the query.
One caveat is guarded: if a suffix between the qname and C is a name that the zone data
mentions without it existing (a dangling CNAME or MX target, an SOA RNAME), dnspython
would point into the query's labels for it, and could follow a CNAME chain back to the
qname: such queries (the False entries) go to dnspython (counted as "mentioned").

What goes to dnspython instead (counted in `fallbacks` by reason): queries the minimal
parser does not vouch for ("wire": compression pointers in the question, unusual counts,
trailing bytes, EDNS options it would have to parse, EDNS version > 0), "mentioned" names
as above, and answers larger than 64 KiB ("too-big"). Everything else (wildcards, CNAME
chains across zones, referrals and glue, NODATA, NXDOMAIN, ANY, TC, 0x20 case, EDNS and
the DO bit) is compiled.

Memory: templates are built on first use, not all at load (a 300 000-record zone would
take a minute to render in full); at most `max_templates` are kept, the oldest dropped
first. The keys a peer can make us render are bounded by the zone data: (existing name,
query type present in the zones or one "other type" key, length of the random labels).
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.renderer

from muxio.handlers.dns.lookup import RELEVANT_TYPES, lookup
from muxio.handlers.dns.wire import QUESTION_START, check_name
from muxio.handlers.dns.zones import ZoneSet

log = logging.getLogger("muxio.dns")

DEFAULT_MAX_TEMPLATES = 100_000
OTHER_TYPE = 0x10000
"""Template key for every query type that no zone holds and `lookup` does not treat
specially: all such types get the same sections."""
REFUSED = 5
_IN = dns.rdataclass.IN
_TRANSFER_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
_ADDITIONAL = dns.renderer.ADDITIONAL
_QR = 0x80
_AA = 0x04
_TC = 0x02
_RD = 0x01
_COUNTS = struct.Struct("!HHH")
_Renderer: Any = dns.renderer.Renderer  # untyped in dnspython


class Template:
    """The sections of one answer in wire format, for queries with the same key."""

    __slots__ = ("body", "boundaries", "heads", "flags", "rcode")

    def __init__(self, flags: int, rcode: int, body: bytes,
                 boundaries: tuple[tuple[int, int, int, int, int], ...]) -> None:
        self.flags = flags
        """QR, and AA when authoritative (the first header byte, before RD)."""
        self.rcode = rcode
        self.body = body
        self.boundaries = boundaries
        """(end offset in body, section, ANCOUNT, NSCOUNT, ARCOUNT) after each RRset."""
        an, ns, ar = boundaries[-1][2:] if boundaries else (0, 0, 0)
        self.heads = head_bytes(flags, rcode, an, ns, ar)
        """Header bytes 2-11 by (RD | with OPT << 1): flags, rcode, the four counts."""


def head_bytes(flags: int, rcode: int, an: int, ns: int, ar: int) -> tuple[bytes, ...]:
    return tuple(bytes((flags | rd, rcode)) + b"\x00\x01" + _COUNTS.pack(an, ns, ar + opt)
                 for opt in (0, 1) for rd in (0, _RD))


_REFUSED_TEMPLATE = Template(_QR, REFUSED, b"", ())


class Entry:
    """A name of the table: its templates, keyed by (query type key << 8) | length of the
    labels above it (0 for the name itself)."""

    __slots__ = ("exists", "templates")

    def __init__(self, exists: bool) -> None:
        self.exists = exists
        """False: a name that zone data mentions but that does not exist."""
        self.templates: dict[int, Template] = {}


class CompiledZones:
    """A zone set indexed for the compiled answer path (see the module docstring)."""

    __slots__ = ("zones", "names", "relevant_types", "max_templates", "_order", "answered",
                 "fallbacks")

    def __init__(self, zones: ZoneSet, max_templates: int = DEFAULT_MAX_TEMPLATES) -> None:
        self.zones = zones
        self.max_templates = max_templates
        names: dict[bytes, Entry] = {}
        relevant: set[int] = set(RELEVANT_TYPES)
        for zone in zones.values():
            for name in zone.names:
                if zones.find(name) is zone:  # not shadowed by a child zone we also serve
                    names[_key(name)] = Entry(True)
            for by_type in zone.rrsets.values():
                relevant.update(by_type)
        for zone in zones.values():
            for by_type in zone.rrsets.values():
                for rrset in by_type.values():
                    for rdata in rrset:
                        for mentioned in _names_in(rdata):
                            if zones.find(mentioned) is not None:
                                names.setdefault(_key(mentioned), Entry(False))
        self.names = names
        """Lowercase wire name -> its Entry (existing, or only mentioned in RDATA)."""
        self.relevant_types = frozenset(relevant)
        self._order: deque[tuple[Entry, int]] = deque()
        """Every template held, oldest first (the first to go past `max_templates`)."""
        self.answered = 0
        self.fallbacks: dict[str, int] = {"wire": 0, "mentioned": 0, "too-big": 0}

    @property
    def templates(self) -> int:
        """Templates held now."""
        return len(self._order)

    def answer(self, wire: bytes, parsed: tuple[int, int, int, int, int], limit: int,
               opt: bytes) -> tuple[bytes | None, bool]:
        """(the response to a query, whether it is for a name that exists), or (None,
        False): let dnspython answer it (counted in `fallbacks`). `parsed` is what
        `wire.parse_query` read (end of the qname, qtype, qclass...), `limit` the size limit,
        `opt` our OPT record (empty without EDNS). Answers for names that do not exist are
        not worth caching by query bytes: a flood of random names would only churn that
        cache."""
        name_end, qtype, qclass, _, _ = parsed
        above = 0
        if qclass != _IN or qtype in _TRANSFER_TYPES:
            if not check_name(wire, name_end):
                self.fallbacks["wire"] += 1
                return None, False
            template = _REFUSED_TEMPLATE
        else:
            key = wire[QUESTION_START:name_end].lower()
            names = self.names
            entry = names.get(key)
            if entry is None:
                # Walk up the labels to the closest encloser, checking each label on the
                # way (a name found in the table is well formed; `parse_query` did not
                # check the labels of this one).
                last = len(key) - 1
                while True:
                    length = key[above]
                    if not length or length > 63:
                        if above == last:
                            break  # the root, and no zone of ours on the way
                        self.fallbacks["wire"] += 1
                        return None, False  # malformed: for dnspython to judge
                    above += length + 1
                    if above > last:
                        self.fallbacks["wire"] += 1
                        return None, False
                    entry = names.get(key[above:])
                    if entry is not None:
                        break
            if entry is None:
                template = _REFUSED_TEMPLATE
            elif not entry.exists:
                self.fallbacks["mentioned"] += 1
                return None, False
            else:
                template_key = ((qtype if qtype in self.relevant_types else OTHER_TYPE) << 8) \
                    | above
                cached = entry.templates.get(template_key)
                if cached is None:
                    cached = self._build(wire, name_end, qtype, entry, template_key)
                    if cached is None:
                        return None, False
                template = cached
        question_end = name_end + 4
        body = template.body
        if question_end + len(body) + len(opt) > limit:
            return self._truncated(wire, question_end, template, limit, opt), not above
        self.answered += 1
        return b"".join((wire[:2], template.heads[(wire[2] & _RD) | (2 if opt else 0)],
                         wire[QUESTION_START:question_end], body, opt)), not above

    def _truncated(self, wire: bytes, question_end: int, template: Template, limit: int,
                   opt: bytes) -> bytes:
        """What dnspython sends when the sections do not fit: the RRsets that fit, up to
        the first additional one that does not; or, when an answer or authority RRset
        does not fit, TC and no section."""
        room = limit - len(opt) - question_end
        kept_end, an, ns, ar = 0, 0, 0, 0
        flags = template.flags
        for end, section, an_after, ns_after, ar_after in template.boundaries:
            if end > room:
                if section < _ADDITIONAL:
                    flags |= _TC
                    kept_end, an, ns, ar = 0, 0, 0, 0
                break
            kept_end, an, ns, ar = end, an_after, ns_after, ar_after
        self.answered += 1
        rd = wire[2] & _RD
        head = bytes((flags | rd, template.rcode)) + b"\x00\x01" + \
            _COUNTS.pack(an, ns, ar + (1 if opt else 0))
        return b"".join((wire[:2], head, wire[QUESTION_START:question_end],
                         template.body[:kept_end], opt))

    def _build(self, wire: bytes, name_end: int, qtype: int, entry: Entry,
               template_key: int) -> Template | None:
        """Render the sections for this query with dnspython, and keep them for every
        query with the same key."""
        qname, _ = dns.name.from_wire(wire[:name_end], QUESTION_START)
        result = lookup(self.zones, qname, qtype)
        renderer = _Renderer(0, 0, 65535)
        boundaries: list[tuple[int, int, int, int, int]] = []
        try:
            renderer.add_question(qname, qtype, _IN)
            start = renderer.output.tell()
            for section, rrsets in enumerate(result.sections(), start=1):
                for rrset in rrsets:
                    renderer.add_rrset(section, rrset, want_shuffle=False)
                    _, an, ns, ar = renderer.counts
                    boundaries.append((renderer.output.tell() - start, section, an, ns, ar))
        except dns.exception.TooBig:
            self.fallbacks["too-big"] += 1
            return None
        flags = _QR | (_AA if result.authoritative else 0)
        template = Template(flags, int(result.rcode), renderer.output.getvalue()[start:],
                            tuple(boundaries))
        order = self._order
        if len(order) >= self.max_templates:
            oldest, oldest_key = order.popleft()
            del oldest.templates[oldest_key]
        entry.templates[template_key] = template
        order.append((entry, template_key))
        return template

    def statistics(self) -> dict[str, int]:
        return {"compiled": self.answered, "templates": self.templates,
                **{f"fallback {reason}": count for reason, count in self.fallbacks.items()}}


def _key(name: dns.name.Name) -> bytes:
    """A name as the table keys it: lowercase wire format."""
    wire = name.canonicalize().to_wire()
    assert wire is not None
    return wire


def _names_in(rdata: object) -> list[dns.name.Name]:
    """Every domain name held in an RDATA (any type: its slots are inspected)."""
    names = []
    for cls in type(rdata).__mro__:
        slots = getattr(cls, "__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            value = getattr(rdata, slot, None)
            if isinstance(value, dns.name.Name):
                names.append(value)
    return names
