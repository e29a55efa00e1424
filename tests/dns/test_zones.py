"""Zone loading: directives, $INCLUDE resolution, origins, the index, and clear errors."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from muxio.handlers.dns import ZoneError, ZoneSet, load_zone, load_zones
from tests.dns.helpers import ZONE_FILES, ZONES_DIR

SOA = "@ IN SOA ns1 hostmaster 1 3600 900 604800 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n"


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def test_the_test_zones_load_from_any_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # $INCLUDE hosts.inc is relative to the zone file
    zones = load_zones(ZONE_FILES)
    assert sorted(str(origin) for origin in zones) == [
        "2.0.192.in-addr.arpa.", "example.com.", "example.org."]
    example = zones[name("example.com")]
    assert example.rrsets[name("host2.example.com")][dns.rdatatype.AAAA][0].to_text() == \
        "2001:db8::102"
    assert example.rrsets[name("host1.example.com")][dns.rdatatype.A].ttl == 60  # $TTL 60
    assert example.rrsets[name("ns1.example.com")][dns.rdatatype.A].ttl == 3600
    assert example.negative_soa.ttl == 300
    assert example.cuts == {name("sub.example.com"), name("ext.example.com")}
    assert name("b.c.example.com") in example.names  # an empty non-terminal
    assert name("b.c.example.com") not in example.rrsets


def test_origin_from_an_absolute_soa_owner_without_origin_directive() -> None:
    zone = load_zone(ZONES_DIR / "example.org.zone")
    assert zone.origin == name("example.org")


def test_explicit_origin_for_a_file_of_relative_names(tmp_path: Path) -> None:
    path = tmp_path / "relative.zone"
    path.write_text("$TTL 300\n" + SOA)
    with pytest.raises(ZoneError, match=r"origin is unknown: start the file with '\$ORIGIN"):
        load_zone(path)
    assert load_zone(path, origin="example.test.").origin == name("example.test")


def test_nested_includes_resolve_against_each_including_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "top.zone").write_text(
        "$ORIGIN nested.test.\n$TTL 300\n" + SOA + "$INCLUDE sub/first.inc\nlast IN A 192.0.2.9\n")
    (tmp_path / "sub" / "first.inc").write_text(
        "first IN A 192.0.2.1\n$INCLUDE second.inc deeper.nested.test.\n")
    (tmp_path / "sub" / "second.inc").write_text("second IN A 192.0.2.2\n")
    monkeypatch.chdir("/")
    zone = load_zone(tmp_path / "top.zone")
    owners = {str(owner) for owner in zone.rrsets}
    assert {"first.nested.test.", "second.deeper.nested.test.", "last.nested.test."} <= owners


@pytest.mark.parametrize(("content", "message"), [
    ("$ORIGIN bad.test.\n" + SOA + "www IN A not-an-address\n", r"bad\.zone:\d+: "),
    ("$ORIGIN bad.test.\n$TTL 60\nwww IN A 192.0.2.1\n", "no SOA"),
    ("$ORIGIN bad.test.\n$TTL 60\n" + SOA + "$INCLUDE missing.inc\n", r"missing\.inc"),
    ("$ORIGIN bad.test.\n$TTL 60\n" + SOA + "www IN CNAME a\nwww IN A 192.0.2.1\n", "CNAME"),
])
def test_broken_zone_files_name_the_file_and_problem(tmp_path: Path, content: str,
                                                     message: str) -> None:
    path = tmp_path / "bad.zone"
    path.write_text(content)
    with pytest.raises(ZoneError, match=message) as caught:
        load_zone(path)
    assert "bad.zone" in str(caught.value)


def test_missing_and_duplicate_files(tmp_path: Path) -> None:
    with pytest.raises(ZoneError, match="cannot read zone file .*nowhere.zone"):
        load_zone(tmp_path / "nowhere.zone")
    with pytest.raises(ZoneError, match="example.com. is loaded twice"):
        load_zones([ZONE_FILES[0], ZONE_FILES[0]])
    with pytest.raises(ZoneError, match="no zone files given"):
        load_zones([])


def test_closest_enclosing_zone() -> None:
    zones = load_zones(ZONE_FILES)
    assert isinstance(zones, ZoneSet)
    found = zones.find(name("a.b.example.com"))
    assert found is not None and found.origin == name("example.com")
    reverse = zones.find(name("1.2.0.192.in-addr.arpa"))
    assert reverse is not None and reverse.origin == name("2.0.192.in-addr.arpa")
    assert zones.find(name("0.192.in-addr.arpa")) is None
    assert zones.find(name("example.net")) is None
    assert zones.find(dns.name.root) is None
