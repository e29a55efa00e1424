"""Zone loading: directives, $INCLUDE resolution, origins, the index, and clear errors."""

from __future__ import annotations

import os
import re
import threading
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


# -- hostile zone files: what a reload may find at the path ----------------------------------

HEAD = "$ORIGIN hostile.test.\n$TTL 60\n" + SOA


def load_in_thread(path: Path, **options: int) -> ZoneError | None:
    """load_zone in a daemon thread, joined with a deadline: a regression that blocks on
    a FIFO fails this test instead of hanging the suite."""
    outcome: list[ZoneError | None] = []

    def run() -> None:
        try:
            load_zone(path, **options)
            outcome.append(None)
        except ZoneError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10.0)
    assert outcome, f"load_zone({path}) blocked"
    return outcome[0]


def test_a_fifo_or_a_directory_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.zone")
    error = load_in_thread(tmp_path / "fifo.zone")
    assert error is not None and "is a FIFO, not a regular file" in str(error)
    error = load_in_thread(tmp_path)
    assert error is not None and "is a directory, not a regular file" in str(error)


@pytest.mark.parametrize(("include", "message"), [
    ("fifo.inc", r"hostile\.zone:\d+: \$INCLUDE .*fifo\.inc: not a regular file \(a FIFO\)"),
    (".", r"\$INCLUDE .*: not a regular file \(a directory\)"),
    ("self.inc", r"self\.inc:\d+: \$INCLUDE .*self\.inc: nested more than 8 deep"),
])
def test_includes_of_a_fifo_a_directory_or_itself_are_refused(
        tmp_path: Path, include: str, message: str) -> None:
    os.mkfifo(tmp_path / "fifo.inc")
    (tmp_path / "self.inc").write_text("$INCLUDE self.inc\n")
    (tmp_path / "hostile.zone").write_text(HEAD + f"$INCLUDE {include}\n")
    error = load_in_thread(tmp_path / "hostile.zone")
    assert error is not None and re.search(message, str(error)), error


@pytest.mark.parametrize("content", ["", "\n; only a comment\n", "$ORIGIN hostile.test.\n"])
def test_a_zone_file_without_records_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "empty.zone").write_text(content)
    with pytest.raises(ZoneError, match=r"empty\.zone: the zone file holds no records"):
        load_zone(tmp_path / "empty.zone")


def test_generate_stops_at_the_record_limit(tmp_path: Path) -> None:
    (tmp_path / "hostile.zone").write_text(HEAD + "$GENERATE 1-300000 h$ A 192.0.2.1\n")
    error = load_in_thread(tmp_path / "hostile.zone", max_records=500)
    assert error is not None and "more than 500 records" in str(error)
    assert len(load_zone(ZONE_FILES[0], max_records=100).rrsets) > 10  # under it: loads
