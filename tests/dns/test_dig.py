"""`dig` (BIND's client, not ours) against our server, on every backend: each record type,
negative answers, referrals, TCP, truncation by +bufsize, +norec."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

import pytest

from tests.dns.helpers import ServedDns
from tests.tools import require_tool


@dataclass
class DigOutput:
    status: str
    flags: set[str]
    sections: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""

    def records(self, section: str) -> list[tuple[str, str, str]]:
        """(owner, type, data) of each record line in a section."""
        rows = []
        for line in self.sections.get(section, []):
            owner, _ttl, _class, rdtype, data = line.split(None, 4)
            rows.append((owner.lower(), rdtype, data))
        return rows


def dig(served: ServedDns, *args: str) -> DigOutput:
    program = require_tool("dig", "dnsutils")
    result = subprocess.run(
        [program, f"@{served.host}", "-p", str(served.port), "+time=5", "+tries=1",
         "+nocookie", *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"dig failed: {result.stdout}{result.stderr}"
    text = result.stdout
    header = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags:([a-z ]*);", text)
    assert header and flags, text
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r";; (\w+) SECTION:", line)
        if heading:
            current = heading.group(1)
            sections[current] = []
        elif not line.strip():
            current = None
        elif current is not None and current != "QUESTION":
            sections[current].append(line)
    return DigOutput(header.group(1), set(flags.group(1).split()), sections, text)


POSITIVE = [
    ("example.com", "A", [("example.com.", "A", "192.0.2.1")]),
    ("example.com", "AAAA", [("example.com.", "AAAA", "2001:db8::1")]),
    ("www.example.com", "CNAME", [("www.example.com.", "CNAME", "example.com.")]),
    ("www.example.com", "A", [("www.example.com.", "CNAME", "example.com."),
                              ("example.com.", "A", "192.0.2.1")]),
    ("example.com", "MX", [("example.com.", "MX", "10 mail.example.com."),
                           ("example.com.", "MX", "20 mail.example.org.")]),
    ("example.com", "NS", [("example.com.", "NS", "ns1.example.com."),
                           ("example.com.", "NS", "ns2.example.com.")]),
    ("example.com", "SOA", [("example.com.", "SOA", "ns1.example.com. hostmaster.example.com. "
                                                    "2024010101 7200 3600 1209600 300")]),
    ("quoted.example.com", "TXT", [("quoted.example.com.", "TXT",
                                    '"two" "strings with spaces"')]),
    ("_sip._tcp.example.com", "SRV", [
        ("_sip._tcp.example.com.", "SRV", "10 60 5060 sip.example.com."),
        ("_sip._tcp.example.com.", "SRV", "20 10 5060 sip2.example.org.")]),
    ("1.2.0.192.in-addr.arpa", "PTR", [("1.2.0.192.in-addr.arpa.", "PTR", "example.com.")]),
    ("example.com", "CAA", [("example.com.", "CAA", '0 issue "letsencrypt.org"'),
                            ("example.com.", "CAA", '0 iodef "mailto:security@example.com"')]),
    ("anything.wild.example.com", "A", [("anything.wild.example.com.", "A", "192.0.2.99")]),
    ("host2.example.com", "AAAA", [("host2.example.com.", "AAAA", "2001:db8::102")]),
]


@pytest.mark.parametrize(("name", "rdtype", "expected"), POSITIVE,
                         ids=[f"{name}-{rdtype}" for name, rdtype, _ in POSITIVE])
def test_dig_gets_every_record_type(served: ServedDns, name: str, rdtype: str,
                                    expected: list[tuple[str, str, str]]) -> None:
    output = dig(served, name, rdtype, "+norec")
    assert output.status == "NOERROR"
    assert {"qr", "aa"} <= output.flags
    assert "ra" not in output.flags
    assert sorted(output.records("ANSWER")) == sorted(expected)


def test_dig_reverse_lookup_shortcut(served: ServedDns) -> None:
    output = dig(served, "-x", "192.0.2.25", "+norec")
    assert output.records("ANSWER") == [("25.2.0.192.in-addr.arpa.", "PTR", "mail.example.com.")]


def test_dig_nxdomain_has_the_soa(served: ServedDns) -> None:
    output = dig(served, "missing.example.com", "A", "+norec")
    assert output.status == "NXDOMAIN"
    assert "aa" in output.flags
    assert "ANSWER" not in output.sections
    [(owner, rdtype, _data)] = output.records("AUTHORITY")
    assert (owner, rdtype) == ("example.com.", "SOA")
    assert output.sections["AUTHORITY"][0].split()[1] == "300"  # min(TTL, MINIMUM)


def test_dig_nodata_has_the_soa(served: ServedDns) -> None:
    output = dig(served, "mail.example.com", "TXT", "+norec")
    assert output.status == "NOERROR"
    assert "aa" in output.flags
    assert "ANSWER" not in output.sections
    assert [row[:2] for row in output.records("AUTHORITY")] == [("example.com.", "SOA")]


def test_dig_refused_outside_our_zones(served: ServedDns) -> None:
    output = dig(served, "example.net", "A")
    assert output.status == "REFUSED"
    assert "aa" not in output.flags
    assert not output.sections.get("ANSWER")


def test_dig_referral_with_glue(served: ServedDns) -> None:
    output = dig(served, "www.sub.example.com", "A", "+norec")
    assert output.status == "NOERROR"
    assert "aa" not in output.flags
    assert sorted(output.records("AUTHORITY")) == [
        ("sub.example.com.", "NS", "ns.example.net."),
        ("sub.example.com.", "NS", "ns.sub.example.com.")]
    assert sorted(output.records("ADDITIONAL")) == [
        ("ns.sub.example.com.", "A", "192.0.2.200"),
        ("ns.sub.example.com.", "AAAA", "2001:db8::200")]


def test_dig_over_tcp_gets_the_big_answer(served: ServedDns) -> None:
    output = dig(served, "big.example.com", "TXT", "+tcp", "+norec")
    assert output.status == "NOERROR"
    assert "tc" not in output.flags
    [(_, rdtype, data)] = output.records("ANSWER")
    assert rdtype == "TXT" and data.count('"') == 24  # all 12 strings
    assert "(TCP)" in output.text


@pytest.mark.parametrize("bufsize", ["512", "1232", "4096"])
def test_dig_bufsize_truncation_sets_tc(served: ServedDns, bufsize: str) -> None:
    """The big TXT (~1.5 KB) never fits a UDP response (we send at most 1232 bytes):
    TC and nothing partial; dig's +ignore keeps it from retrying over TCP."""
    output = dig(served, "big.example.com", "TXT", f"+bufsize={bufsize}", "+ignore")
    assert "tc" in output.flags
    assert not output.sections.get("ANSWER")


def test_dig_small_bufsize_still_gets_a_small_answer(served: ServedDns) -> None:
    output = dig(served, "example.com", "A", "+bufsize=512")
    assert "tc" not in output.flags
    assert output.records("ANSWER") == [("example.com.", "A", "192.0.2.1")]


def test_dig_retries_a_truncated_answer_over_tcp(served: ServedDns) -> None:
    output = dig(served, "big.example.com", "TXT", "+noedns")
    assert "Truncated, retrying in TCP mode" in output.text
    assert len(output.records("ANSWER")) == 1


def test_dig_norec_and_rec_flags(served: ServedDns) -> None:
    recursive = dig(served, "example.com", "A")
    assert "rd" in recursive.flags and "ra" not in recursive.flags  # RD echoed, no recursion
    norec = dig(served, "example.com", "A", "+norec")
    assert "rd" not in norec.flags
    assert recursive.records("ANSWER") == norec.records("ANSWER")


def test_dig_edns_badvers(served: ServedDns) -> None:
    output = dig(served, "example.com", "A", "+edns=1", "+noednsnegotiation")
    assert output.status == "BADVERS"
