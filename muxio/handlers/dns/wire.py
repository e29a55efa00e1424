"""A minimal DNS query parser on raw bytes: the header, the one question, the OPT record.

`parse_query(wire)` reads what the compiled answer path needs with bytes indexing only
(no objects per query), and returns None for anything it does not vouch for: the caller
then lets dnspython parse the message, which either answers it or finds it malformed
(FORMERR). So this parser never has to decide what is malformed; it only has to be sure
that what it accepts, dnspython would parse to the same question and EDNS fields.

Accepted: QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1; a question name made of plain
labels (1-63 bytes, no compression pointer, 255 bytes at most in all); with ARCOUNT 1 an
OPT record owned by the root, EDNS version 0, whose RDATA is a well-formed list of options;
nothing after the last record. Options are ignored (they do not change our answers), but
only those that dnspython would not parse into a typed option that can fail (it builds a
`GenericOption` for them) or a COOKIE whose lengths it accepts: every other known option
goes to dnspython, so a malformed one still gets FORMERR.

The header bits that decide silence (QR) and NOTIMP (opcode) are checked by the caller
before this.
"""

from __future__ import annotations

import dns.edns

QUESTION_START = 12
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_QUESTION_AND_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_OPT = 41
_OPT_FIXED = 11
"""Root owner (1), type (2), class = payload (2), TTL = ext. rcode, version, flags (4),
RDLENGTH (2)."""
_MAX_NAME = 255
_COOKIE = int(dns.edns.OptionType.COOKIE)
_option_is_generic: dict[int, bool] = {}


def _generic(code: int) -> bool:
    """Whether dnspython keeps option `code` as opaque bytes (cannot fail to parse it)."""
    generic = _option_is_generic.get(code)
    if generic is None:
        generic = dns.edns.get_option_class(dns.edns.OptionType.make(code)) \
            is dns.edns.GenericOption
        _option_is_generic[code] = generic
    return generic


def _options_ok(wire: bytes, start: int, end: int) -> bool:
    position = start
    while position < end:
        if position + 4 > end:
            return False
        code = (wire[position] << 8) | wire[position + 1]
        length = (wire[position + 2] << 8) | wire[position + 3]
        position += 4 + length
        if position > end:
            return False
        if not _generic(code) and not (code == _COOKIE and (length == 8
                                                            or 16 <= length <= 40)):
            return False
    return True


def parse_query(wire: bytes) -> tuple[int, int, int, int, int] | None:
    """(end of the question name, qtype, qclass, EDNS payload or -1 without EDNS, DO bit
    as 0 or 0x80), or None: not a query this parser vouches for (see the module
    docstring). `wire` is at least 12 bytes long.

    Without EDNS options, the question's end is found from the end of the message (the
    fixed-size qtype, qclass and OPT record), and the name's labels are NOT checked here:
    the caller must check them with `check_name` unless the name is one it knows to be
    well formed (a name equal to a well-formed name is well formed: lowercasing, the only
    change a lookup makes, never touches a length byte). That spares the label walk on
    the common path. With options, the labels are walked to find where the OPT starts."""
    counts = wire[4:12]
    end = len(wire)
    if counts == _ONE_QUESTION:
        name_end = end - 4
        payload = -1
        dnssec_ok = 0
    elif counts == _ONE_QUESTION_AND_OPT:
        opt = end - _OPT_FIXED
        if opt > QUESTION_START + 4 and not wire[opt] and not wire[opt + 1] \
                and wire[opt + 2] == _OPT and not wire[opt + 6] and not wire[opt + 9] \
                and not wire[opt + 10]:
            # An OPT record without options, EDNS version 0, at the very end.
            name_end = opt - 4
            payload = (wire[opt + 3] << 8) | wire[opt + 4]
            dnssec_ok = wire[opt + 7] & 0x80
        else:
            return _parse_with_options(wire)
    else:
        return None
    if name_end <= QUESTION_START or wire[name_end - 1] \
            or name_end - QUESTION_START > _MAX_NAME:
        return None
    qtype = (wire[name_end] << 8) | wire[name_end + 1]
    qclass = (wire[name_end + 2] << 8) | wire[name_end + 3]
    return name_end, qtype, qclass, payload, dnssec_ok


def check_name(wire: bytes, name_end: int) -> bool:
    """Whether wire[12:name_end] is a name of plain labels (1-63 bytes, no compression
    pointer) ending with the root label exactly at name_end."""
    position = QUESTION_START
    last = name_end - 1
    while position < last:
        length = wire[position]
        if not length or length > 63:
            return False
        position += length + 1
    return position == last


def _parse_with_options(wire: bytes) -> tuple[int, int, int, int, int] | None:
    """`parse_query` for a message whose OPT record carries options (or is odd): walk the
    labels to find where the question ends."""
    end = len(wire)
    position = QUESTION_START
    while True:
        if position >= end:
            return None
        length = wire[position]
        if length == 0:
            break
        if length > 63:
            return None  # a compression pointer or a reserved label type
        position += length + 1
    name_end = position + 1
    if name_end - QUESTION_START > _MAX_NAME:
        return None
    position = name_end + 4
    if position > end:
        return None
    qtype = (wire[name_end] << 8) | wire[name_end + 1]
    qclass = (wire[name_end + 2] << 8) | wire[name_end + 3]
    if end < position + _OPT_FIXED or wire[position] != 0 or wire[position + 1] != 0 \
            or wire[position + 2] != _OPT or wire[position + 6] != 0:
        return None  # not an OPT at the root, or EDNS version > 0 (BADVERS)
    payload = (wire[position + 3] << 8) | wire[position + 4]
    dnssec_ok = wire[position + 7] & 0x80
    rdata = position + _OPT_FIXED
    if rdata + ((wire[position + 9] << 8) | wire[position + 10]) != end:
        return None
    if rdata != end and not _options_ok(wire, rdata, end):
        return None
    return name_end, qtype, qclass, payload, dnssec_ok
