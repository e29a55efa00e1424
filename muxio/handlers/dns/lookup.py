"""The authoritative lookup, on dnspython objects: (qname, qtype) -> the sections of the answer.

This is the reference algorithm (RFC 1034 4.3.2, RFC 4592 for wildcards, RFC 2308 for
negative answers); the compiled answer path (compiled.py) renders its templates from it,
so the two cannot disagree on what an answer holds, only on how fast it is built.

- below a delegation point (NS below the apex): a referral, without AA: the NS set in the
  authority section, glue addresses in the additional section;
- the name exists and has the type: the answer; the zone's apex NS in the authority
  section (unless that is the answer, or the type is ANY, DS or DNSKEY, as nsd does);
  addresses of NS/MX/SRV targets in the zone in the additional section;
- the name has a CNAME: the CNAME, then the lookup goes on at its target, in any of our
  zones (loops and chains longer than `MAX_CNAME_CHAIN` stop);
- the name exists without the type, or is an empty non-terminal: NODATA;
- a DS query for the apex of a zone whose parent zone we serve too: answered from the
  parent (RFC 4035 3.1.4.1);
- the name does not exist: a wildcard `*.<closest encloser>` synthesises it, else
  NXDOMAIN. NODATA and NXDOMAIN carry the SOA in the authority section with the negative
  TTL min(SOA TTL, SOA MINIMUM).
- ANY (RFC 8482 section 4.1, the choice nsd makes): one RRset of the name, not all of
  them. The first of A, AAAA, SOA, MX, PTR in zone file order; else the last other one.
  An ANY query is the classic amplification vector (a 30-byte question drawing every
  RRset of the apex); one RRset bounds the reply to the largest RRset of the name, and
  the answer is the same as nsd's, over UDP and TCP alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.NS
import dns.rdtypes.IN.SRV
import dns.rrset

from muxio.handlers.dns.zones import Zone, ZoneSet

MAX_CNAME_CHAIN = 16
"""CNAMEs followed for one query before giving up (loops stop earlier, when detected)."""

_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_CNAME = dns.rdatatype.CNAME
_NS = dns.rdatatype.NS
_ANY = dns.rdatatype.ANY
_DS = dns.rdatatype.DS
_TARGET_TYPES = frozenset({dns.rdatatype.NS, dns.rdatatype.MX, dns.rdatatype.SRV})
_NO_AUTHORITY_NS = frozenset({dns.rdatatype.ANY, dns.rdatatype.DS, dns.rdatatype.DNSKEY})
"""Query types answered without the apex NS in the authority section (nsd: their answers
are large enough already)."""
_ANY_PREFERRED = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SOA,
                            dns.rdatatype.MX, dns.rdatatype.PTR})
_ANY_LAST_RESORT = frozenset({dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG, dns.rdatatype.NSEC})
RELEVANT_TYPES = frozenset({_ANY, _CNAME, _NS, dns.rdatatype.SOA, dns.rdatatype.DS,
                            dns.rdatatype.DNSKEY})
"""The query types `lookup` treats specially, whatever the zone holds: for any other type
absent from every zone, the answer is the same as for any other such type."""


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

    def sections(self) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset],
                                list[dns.rrset.RRset]]:
        return self.answer, self.authority, self.additional

    def __repr__(self) -> str:
        return (f"<Resolution {self.rcode.name} aa={self.authoritative} "
                f"answer={len(self.answer)} authority={len(self.authority)} "
                f"additional={len(self.additional)}>")


def _owned_by(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    """`rrset` with `owner` as its name (wildcard synthesis, or the query's spelling)."""
    if rrset.name is owner:
        return rrset
    return dns.rrset.from_rdata_list(owner, rrset.ttl, list(rrset))


def targets(rrset: dns.rrset.RRset) -> list[dns.name.Name]:
    """The names an NS, MX or SRV RRset points at (whose addresses go in the additional
    section); none for other types."""
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


def _any_rrset(node: dict[int, dns.rrset.RRset]) -> dns.rrset.RRset:
    """The one RRset an ANY query gets (nsd's choice, see the module docstring)."""
    normal = last_resort = None
    for rdtype, rrset in node.items():
        if rdtype in _ANY_PREFERRED:
            return rrset
        if rdtype in _ANY_LAST_RESORT:
            last_resort = rrset
        else:
            normal = rrset
    chosen = normal or last_resort
    assert chosen is not None, "a node holds at least one RRset"
    return chosen


def lookup(zones: ZoneSet, qname: dns.name.Name, qtype: int) -> Resolution:
    """Answer (qname, qtype, IN) from `zones`: the RFC 1034 algorithm for an authoritative
    server, with wildcards (RFC 4592) and CNAME chains across our zones."""
    answer: list[dns.rrset.RRset] = []
    visited: set[dns.name.Name] = set()
    name = qname
    first = True
    while True:
        zone = zones.find(name)
        if qtype == _DS and zone is not None and name == zone.origin and len(name) > 1:
            # The DS set of a zone lives in its parent: answer from the parent when we
            # serve it too (RFC 4035 3.1.4.1, as nsd does).
            zone = zones.find(name.parent()) or zone
        if zone is None:
            if first:
                return Resolution(dns.rcode.REFUSED, False)
            return Resolution(dns.rcode.NOERROR, True, answer)  # a CNAME leaving our zones
        cut = zone.cut_covering(name, qtype)
        if cut is not None:
            delegation = zone.rrsets[cut][_NS]
            return Resolution(dns.rcode.NOERROR, not first, answer, [delegation],
                              _addresses(zone, targets(delegation), answer))
        node = zone.rrsets.get(name)
        if node is None:
            if name in zone.names:  # an empty non-terminal
                return Resolution(dns.rcode.NOERROR, True, answer, [zone.negative_soa])
            wildcard = zone.wildcard_for(name)
            if wildcard is None:
                return Resolution(dns.rcode.NXDOMAIN, True, answer, [zone.negative_soa])
            node = zone.rrsets[wildcard]
        if qtype == _ANY:
            found = [_owned_by(_any_rrset(node), name)]
            return _positive(zone, qtype, answer + found, found)
        rrset = node.get(qtype)
        if rrset is not None:
            found = [_owned_by(rrset, name)]
            return _positive(zone, qtype, answer + found, found)
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


def _positive(zone: Zone, qtype: int, answer: list[dns.rrset.RRset],
              found: list[dns.rrset.RRset]) -> Resolution:
    apex_ns = zone.apex_ns
    answers_apex_ns = any(rrset.rdtype == _NS and rrset.name == apex_ns.name
                          for rrset in found)
    authority = [] if answers_apex_ns or qtype in _NO_AUTHORITY_NS else [apex_ns]
    names: list[dns.name.Name] = []
    for rrset in found:
        if rrset.rdtype in _TARGET_TYPES:
            names.extend(targets(rrset))
    for rrset in authority:
        names.extend(targets(rrset))
    return Resolution(dns.rcode.NOERROR, True, answer, authority,
                      _addresses(zone, names, answer))
