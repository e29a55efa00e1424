"""Zones: master-format zone files loaded with dnspython, indexed for answering.

A `Zone` keeps what lookups need as plain dicts and sets: the RRsets of every owner name,
every name that exists (owners and the empty non-terminals between them and the apex),
the delegation points (NS below the apex) and the apex SOA and NS. A `ZoneSet` is what
a server serves: one or several zones, found by the closest enclosing origin. Both are
immutable once built, so a reload builds a new set and swaps it in one assignment.

Zone files follow RFC 1035 master format as dnspython reads it (`$ORIGIN`, `$TTL`,
`$INCLUDE`, `$GENERATE`). One difference from dnspython, which opens a relative `$INCLUDE`
path from the process's working directory: here it is relative to the directory of the
file that contains the directive (what a zone directory shared with nsd or BIND expects,
and independent of where the server was started). A file without `$ORIGIN` takes its
origin from its SOA record, which must then be written with an absolute owner name.

A zone file is input like any other, and a reload reads whatever the path holds then:
- only regular files are read: the zone file is opened without blocking and checked
  with fstat (a FIFO put in its place would block the reader forever; a directory or a
  device is a mistake), and every `$INCLUDE` target is checked with stat before dnspython
  opens it;
- `$INCLUDE` nests at most `MAX_INCLUDE_DEPTH` deep (a file that includes itself stops
  there, with an error naming it);
- a zone holds at most `max_records` records (`DEFAULT_MAX_RECORDS`): a `$GENERATE` over a
  huge range stops at the limit instead of growing memory for every record it makes;
- a file without any record is an error that says so.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tokenizer
import dns.zone
import dns.zonefile

from muxio.handlers.dns.errors import ZoneError

NS = dns.rdatatype.NS
SOA = dns.rdatatype.SOA
RRsetsByType = dict[int, dns.rrset.RRset]
MAX_INCLUDE_DEPTH = 8
"""`$INCLUDE` nesting allowed (the top file is depth 0)."""
_ZoneSyntaxError: Any = dns.exception.SyntaxError
"""Raised inside dnspython's reader, which prefixes the file and line (untyped there)."""
DEFAULT_MAX_RECORDS = 100_000
"""Records one zone may hold (each costs ~1.5 KB of memory once indexed)."""


class Zone:
    """One zone's data, indexed for lookups (built by `load_zone` or `Zone.from_dnspython`)."""

    __slots__ = ("origin", "source", "rrsets", "names", "cuts", "soa", "negative_soa",
                 "apex_ns")

    def __init__(self, origin: dns.name.Name, rrsets: dict[dns.name.Name, RRsetsByType],
                 source: str = "<memory>") -> None:
        self.origin = origin
        self.source = source
        self.rrsets = rrsets
        apex = rrsets.get(origin, {})
        if SOA not in apex:
            raise ZoneError(f"zone {origin} ({source}) has no SOA record at its apex")
        if NS not in apex:
            raise ZoneError(f"zone {origin} ({source}) has no NS records at its apex")
        self.soa = apex[SOA]
        self.apex_ns = apex[NS]
        soa_data = self.soa[0]
        assert isinstance(soa_data, dns.rdtypes.ANY.SOA.SOA)
        # RFC 2308 section 5: negative answers carry the SOA with TTL min(TTL, MINIMUM).
        self.negative_soa = dns.rrset.from_rdata_list(
            origin, min(self.soa.ttl, soa_data.minimum), list(self.soa))
        names = set()
        for owner in rrsets:
            name = owner
            while name not in names:
                names.add(name)
                if name == origin:
                    break
                name = name.parent()
        self.names = frozenset(names)
        """Every name that exists in the zone: owners and empty non-terminals."""
        self.cuts = frozenset(owner for owner, by_type in rrsets.items()
                              if NS in by_type and owner != origin)
        """Delegation points: below them, the zone holds only glue."""

    @classmethod
    def from_dnspython(cls, zone: dns.zone.Zone, source: str = "<memory>") -> Zone:
        """Index a dnspython zone loaded with relativize=False."""
        origin = zone.origin
        if origin is None:
            raise ZoneError(f"zone from {source} has no origin")
        if zone.relativize:
            raise ZoneError(f"zone {origin} from {source} was loaded with relativize=True; "
                            f"load it with relativize=False (absolute names)")
        rrsets: dict[dns.name.Name, RRsetsByType] = {}
        for name, node in zone.nodes.items():
            owner = name.derelativize(origin)
            by_type: RRsetsByType = {}
            for rdataset in node.rdatasets:
                if rdataset.covers != dns.rdatatype.NONE:
                    continue  # signatures: this server does not do DNSSEC
                by_type[rdataset.rdtype] = dns.rrset.from_rdata_list(
                    owner, rdataset.ttl, list(rdataset))
            if by_type:
                rrsets[owner] = by_type
        return cls(origin, rrsets, source)

    def cut_covering(self, name: dns.name.Name, rdtype: int) -> dns.name.Name | None:
        """The highest delegation point at or above `name`, if any. A DS query for the
        delegation point itself is the parent's to answer, so that one does not count."""
        if not self.cuts:
            return None
        cuts = self.cuts
        for depth in range(len(self.origin) + 1, len(name) + 1):
            candidate = name if depth == len(name) else name.split(depth)[1]
            if candidate in cuts:
                if candidate == name and rdtype == dns.rdatatype.DS:
                    return None
                return candidate
        return None

    def wildcard_for(self, name: dns.name.Name) -> dns.name.Name | None:
        """The wildcard owner that synthesises `name` (RFC 4592: `*` below the closest
        encloser), or None. Only for names that do not exist."""
        encloser = name.parent()
        while encloser not in self.names:
            encloser = encloser.parent()
        wildcard = dns.name.Name((b"*", *encloser.labels))
        return wildcard if wildcard in self.rrsets else None

    def __repr__(self) -> str:
        return f"<Zone {self.origin} from {self.source}: {len(self.rrsets)} names>"


class ZoneSet(Mapping[dns.name.Name, Zone]):
    """The zones a server is authoritative for, by origin."""

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        self._zones: dict[dns.name.Name, Zone] = {}
        for zone in zones:
            other = self._zones.get(zone.origin)
            if other is not None:
                raise ZoneError(f"zone {zone.origin} is loaded twice: from {other.source} "
                                f"and from {zone.source}; give each zone once")
            self._zones[zone.origin] = zone

    def find(self, name: dns.name.Name) -> Zone | None:
        """The zone with the closest origin enclosing `name` (None: not ours)."""
        zones = self._zones
        while True:
            zone = zones.get(name)
            if zone is not None:
                return zone
            if len(name) <= 1:
                return None
            name = name.parent()

    def __getitem__(self, origin: dns.name.Name) -> Zone:
        return self._zones[origin]

    def __iter__(self) -> Iterator[dns.name.Name]:
        return iter(self._zones)

    def __len__(self) -> int:
        return len(self._zones)

    def __repr__(self) -> str:
        return f"<ZoneSet {', '.join(str(origin) for origin in self._zones)}>"


# -- loading -------------------------------------------------------------------------------


class _IncludeRelativeTokenizer(dns.tokenizer.Tokenizer):
    """A dnspython tokenizer that makes the file name after a leading `$INCLUDE` absolute
    against the directory of the file it reads, and refuses it before dnspython opens it
    when it is not a regular file or would nest too deep."""

    def __init__(self, f: Any, filename: str | None,
                 idna_codec: dns.name.IDNACodec | None = None, depth: int = 0) -> None:
        super().__init__(f, filename, idna_codec)
        path = filename if filename and not filename.startswith("<") else ""
        self._directory = os.path.dirname(os.path.abspath(path)) if path else ""
        self._after_include = False
        self.depth = depth

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        token = super().get(want_leading, want_comment)
        if self._after_include:
            self._after_include = False
            if token.is_identifier() or token.is_quoted_string():
                if self._directory and not os.path.isabs(token.value):
                    token = dns.tokenizer.Token(token.ttype,
                                                os.path.join(self._directory, token.value),
                                                token.has_escape)
                self._check_include(token.value)
        elif want_leading and token.is_identifier() and token.value.upper() == "$INCLUDE":
            self._after_include = True  # the reader asks for the file name next
        return token

    def _check_include(self, path: str) -> None:
        if self.depth >= MAX_INCLUDE_DEPTH:
            raise _ZoneSyntaxError(
                f"$INCLUDE {path}: nested more than {MAX_INCLUDE_DEPTH} deep (does a file "
                f"include itself?)")
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise _ZoneSyntaxError(
                f"$INCLUDE {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise _ZoneSyntaxError(
                f"$INCLUDE {path}: not a regular file ({_file_kind(mode)})")


class _Reader(dns.zonefile.Reader):
    """dnspython's zone file reader, with every tokenizer it uses (the zone file's, then
    each included file's, which it creates itself) swapped for one that resolves relative
    `$INCLUDE` paths, and a count of the records it adds."""

    saved_state: list[Any]

    @property
    def tok(self) -> dns.tokenizer.Tokenizer:
        return self._muxio_tok

    @tok.setter
    def tok(self, value: dns.tokenizer.Tokenizer) -> None:
        if not isinstance(value, _IncludeRelativeTokenizer):
            # A fresh tokenizer (nothing read yet) for an included file: an equivalent one
            # of our class, as deep as the includes saved before it.
            value = _IncludeRelativeTokenizer(value.file, value.filename, value.idna_codec,
                                              depth=len(self.saved_state))
        self._muxio_tok = value

    def close_files(self) -> None:
        """Close the files dnspython opened for `$INCLUDE` (it leaves them open when the
        read fails)."""
        files = [self.current_file] + [state[3] for state in self.saved_state]
        for file in files:
            if file is not None and not isinstance(file, str):
                file.close()


class _CountingTransaction:
    """The zone transaction as the reader sees it, counting the records added: the reader
    stops at the limit instead of building every record a `$GENERATE` asks for."""

    def __init__(self, txn: Any, path: Path, max_records: int) -> None:
        self._txn = txn
        self._path = path
        self._max_records = max_records
        self.records = 0

    def add(self, *args: Any) -> None:
        self.records += 1
        if self.records > self._max_records:
            raise ZoneError(f"{self._path}: more than {self._max_records} records in the zone "
                            f"(a $GENERATE range too wide?): raise the limit "
                            f"(--max-zone-records) or split the zone")
        self._txn.add(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)


def _read_zone(path: Path, text: str, origin: dns.name.Name | None,
               max_records: int) -> dns.zone.Zone:
    zone = dns.zone.Zone(origin, dns.rdataclass.IN, relativize=False)
    with zone.writer(True) as txn:
        tokenizer = _IncludeRelativeTokenizer(text, str(path))
        counting: Any = _CountingTransaction(txn, path, max_records)
        reader = _Reader(tokenizer, dns.rdataclass.IN, counting, allow_include=True)
        try:
            reader.read()
        except dns.zonefile.UnknownOrigin:
            raise dns.zone.UnknownOrigin from None
        finally:
            reader.close_files()
        if not counting.records:
            raise ZoneError(f"{path}: the zone file holds no records: give it at least the "
                            f"zone's SOA and NS records")
    zone.check_origin()
    return zone


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def _read_text(path: Path) -> str:
    """The file's text, if it is a regular file. Opened without blocking and checked with
    fstat on the open descriptor: a FIFO in its place cannot hang us, even if it was put
    there between a check and the open."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ZoneError(f"cannot read zone file {path}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ZoneError(f"zone file {path} is {_file_kind(mode)}, not a regular file: "
                            f"give the path of a zone file")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read()
    except OSError as exc:
        raise ZoneError(f"cannot read zone file {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ZoneError(f"zone file {path} is not UTF-8 text: {exc}") from exc


def _origin_from_soa(path: Path, text: str) -> dns.name.Name:
    """For a file without $ORIGIN: the owner of its SOA, if written as an absolute name."""
    tokenizer = dns.tokenizer.Tokenizer(text, str(path))
    line_start = True
    skip_line = False
    owner: str | None = None
    while True:
        token = tokenizer.get(want_leading=True)
        if token.is_eof():
            break
        if token.is_eol():
            line_start, skip_line = True, False
            continue
        if line_start:
            line_start = False
            if token.is_whitespace():
                continue  # no owner: the previous one applies
            if token.value.startswith("$"):
                skip_line = True  # a directive
            else:
                owner = token.value
            continue
        if not skip_line and token.is_identifier() and token.value.upper() == "SOA":
            if owner is not None and owner.endswith(".") and owner != ".":
                return dns.name.from_text(owner)
            break
    raise ZoneError(f"{path}: the zone's origin is unknown: start the file with "
                    f"'$ORIGIN example.com.' or write the SOA owner as an absolute name")


def load_zone(path: str | os.PathLike[str], origin: str | dns.name.Name | None = None, *,
              max_records: int = DEFAULT_MAX_RECORDS) -> Zone:
    """Load one zone file. `origin` defaults to the file's `$ORIGIN` (or its SOA owner)."""
    path = Path(path)
    text = _read_text(path)
    origin_name = dns.name.from_text(origin) if isinstance(origin, str) else origin
    try:
        try:
            zone = _read_zone(path, text, origin_name, max_records)
        except dns.zone.UnknownOrigin:
            zone = _read_zone(path, text, _origin_from_soa(path, text), max_records)
    except dns.zone.NoSOA:
        raise ZoneError(f"{path}: no SOA record at the zone's origin") from None
    except dns.zone.NoNS:
        raise ZoneError(f"{path}: no NS records at the zone's origin") from None
    except dns.exception.DNSException as exc:
        # dnspython's message starts with file:line for syntax errors.
        raise ZoneError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from exc
    except OSError as exc:  # an $INCLUDE that cannot be opened
        raise ZoneError(f"{path}: $INCLUDE {exc.filename}: {exc.strerror or exc}") from exc
    return Zone.from_dnspython(zone, str(path))


def load_zones(paths: Iterable[str | os.PathLike[str]], *,
               max_records: int = DEFAULT_MAX_RECORDS) -> ZoneSet:
    """Load every zone file; a ZoneError names the first file that failed."""
    zones = [load_zone(path, max_records=max_records) for path in paths]
    if not zones:
        raise ZoneError("no zone files given: pass at least one (--zone FILE)")
    return ZoneSet(zones)
