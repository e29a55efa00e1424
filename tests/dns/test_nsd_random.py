"""Randomised differential: thousands of random queries, our server and nsd on the same zones,
compared section by section.

The zones (written below) hold what makes answering interesting: wildcards (A, TXT, MX,
CNAME) and names beside them, empty non-terminals at several depths (some blocking a
wildcard), CNAME chains within a zone and across zones, loops, a dangling CNAME, a
delegation with glue and DS, a child zone served too (its apex shadows the parent's
delegation), RRsets too large for 512 bytes and an MX set whose addresses do not all fit.
The queries draw names from those zones with random labels prepended at random depths
(wildcard hits, NXDOMAIN at several depths, names below a delegation), in random case,
with random types, EDNS on or off with payloads from 512 to 4096, the DO bit, and some
over TCP.

Each run draws a new seed (printed on failure; set MUXIO_DNS_DIFF_SEED to replay one).
Compared: rcode, header flags, EDNS, and every section as a set of records.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import pytest

from muxio.testing.matrix import matrix_backends
from tests.dns.helpers import Nsd, ServedDns, running_nsd, serving, tcp_query
from tests.dns.test_nsd_differential import summary

QUERIES = int(os.environ.get("MUXIO_DNS_DIFF_QUERIES", "2500"))
ZONES = {
    "rand.test": """\
$ORIGIN rand.test.
$TTL 3600
@           SOA   ns1 hostmaster 1 7200 3600 1209600 300
@           NS    ns1
@           NS    ns2.other.test.
@           MX    10 mail
@           A     192.0.2.1
@           TXT   "apex"
ns1         A     192.0.2.53
ns1         AAAA  2001:db8::53
mail        A     192.0.2.25
mail        AAAA  2001:db8::25
www         CNAME @
chain1      CNAME chain2
chain2      CNAME chain3
chain3      CNAME www.other.test.
loop1       CNAME loop2
loop2       CNAME loop1
dangling    CNAME nothing.rand.test.
out         CNAME host.example.net.
*.wild      A     192.0.2.99
*.wild      TXT   "wild"
*.wild      MX    10 mail
exact.wild  A     192.0.2.98
sub.wild    TXT   "blocks the wildcard below it"
*.cn        CNAME www
*.cn2       CNAME mail.other.test.
*.deep.a.b  A     192.0.2.77
x.y.z       A     192.0.2.5
big         TXT   "{big}" "{big}" "{big}"
{many}
{mxmany}
{hosts}
_sip._tcp   SRV   10 60 5060 mail
_sip._tcp   SRV   20 10 5060 sip.other.test.
caa         CAA   0 issue "ca.example"
del         NS    ns.del
del         NS    ns2.other.test.
del         DS    12345 8 2 {digest}
ns.del      A     192.0.2.200
ns.del      AAAA  2001:db8::200
child       NS    ns.child
ns.child    A     192.0.2.210
""",
    "child.rand.test": """\
$ORIGIN child.rand.test.
$TTL 600
@           SOA   ns hostmaster 7 7200 3600 1209600 60
@           NS    ns
ns          A     192.0.2.210
www         A     192.0.2.211
*           TXT   "child wildcard"
""",
    "other.test": """\
$ORIGIN other.test.
$TTL 1800
@           SOA   ns2 hostmaster 3 7200 3600 1209600 120
@           NS    ns2
ns2         A     192.0.2.54
www         A     192.0.2.80
mail        A     192.0.2.81
sip         AAAA  2001:db8::81
back        CNAME chain1.rand.test.
""",
}
NAMES = {
    "rand.test": ["", "ns1", "mail", "www", "chain1", "chain2", "chain3", "loop1", "dangling",
                  "out", "wild", "exact.wild", "sub.wild", "cn", "cn2", "deep.a.b", "a.b", "b",
                  "x.y.z", "y.z", "z", "big", "many", "mxmany", "h3", "_sip._tcp", "_tcp",
                  "caa", "del", "ns.del", "child", "ns.child", "nope"],
    "child.rand.test": ["", "ns", "www", "zz"],
    "other.test": ["", "ns2", "www", "mail", "sip", "back"],
}
QTYPES = ["A", "A", "A", "AAAA", "TXT", "MX", "CNAME", "NS", "SOA", "SRV", "DS", "CAA",
          "ANY", "PTR", "TYPE65000"]
RANDOM_LABELS = ["q", "xk2", "Www", "a", "mail", "zz9", "n0pe"]


def zone_texts() -> dict[str, str]:
    generated = {
        "big": "x" * 200,
        "many": "\n".join(f"many A 198.51.100.{index}" for index in range(1, 41)),
        "mxmany": "\n".join(f"mxmany MX {index} h{index}" for index in range(14)),
        "hosts": "\n".join(f"h{index} A 192.0.2.{100 + index}\nh{index} AAAA 2001:db8::{index:x}"
                           for index in range(14)),
        "digest": "ab" * 32,
    }
    return {origin: text.format(**generated) for origin, text in ZONES.items()}


@pytest.fixture(scope="module")
def zone_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("random-zones")
    paths = []
    for origin, text in zone_texts().items():
        path = directory / f"{origin}.zone"
        path.write_text(text)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def ours(zone_files: list[Path]) -> Iterator[ServedDns]:
    with serving(matrix_backends()[0], zone_files=zone_files) as served:
        yield served


@pytest.fixture(scope="module")
def theirs(zone_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    with running_nsd(tmp_path_factory.mktemp("nsd-random"), zone_files,
                     list(ZONES)) as process:
        yield process


def random_case(rng: random.Random, name: str) -> str:
    return "".join(char.upper() if rng.random() < 0.3 else char for char in name)


def random_query(rng: random.Random) -> tuple[dns.message.Message, bool]:
    origin = rng.choice(list(NAMES))
    base = rng.choice(NAMES[origin])
    labels = rng.choices(RANDOM_LABELS, k=rng.choice([0, 0, 1, 1, 1, 2, 3]))
    qname = ".".join([*labels, base, origin] if base else [*labels, origin])
    edns = rng.random() < 0.7
    query = dns.message.make_query(
        random_case(rng, qname), rng.choice(QTYPES), use_edns=0 if edns else False,
        payload=rng.choice([512, 600, 800, 1232, 4096]),
        want_dnssec=edns and rng.random() < 0.2)
    if rng.random() < 0.7:
        query.flags &= ~dns.flags.RD
    return query, rng.random() < 0.1


class UdpClient:
    """One socket per server, one query at a time (answers matched by ID)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5.0)
        self.sock.connect(("127.0.0.1", port))

    def ask(self, query: dns.message.Message) -> dns.message.Message:
        self.sock.send(query.to_wire())
        while True:
            reply = dns.message.from_wire(self.sock.recv(65535))
            if reply.id == query.id:
                return reply

    def close(self) -> None:
        self.sock.close()


def test_random_queries_get_the_same_answers_as_nsd(ours: ServedDns, theirs: Nsd) -> None:
    seed = int(os.environ.get("MUXIO_DNS_DIFF_SEED", random.randrange(2 ** 32)))
    rng = random.Random(seed)
    clients = UdpClient(ours.port), UdpClient(theirs.port)
    differences = []
    try:
        for _ in range(QUERIES):
            query, over_tcp = random_query(rng)
            if over_tcp:
                replies = [tcp_query(query, port) for port in (ours.port, theirs.port)]
            else:
                replies = [client.ask(query) for client in clients]
            mine, nsd = (summary(reply) for reply in replies)
            if mine != nsd:
                differences.append((query.question[0].to_text(), query.edns, query.payload,
                                    over_tcp, mine, nsd))
    finally:
        for client in clients:
            client.close()
    assert not differences, (
        f"seed {seed} (MUXIO_DNS_DIFF_SEED={seed} replays it): {len(differences)} of "
        f"{QUERIES} differ; first ones:\n"
        + "\n".join(f"{question} edns={edns}/{payload} tcp={tcp}\n  ours: {mine}\n  nsd:  {nsd}"
                    for question, edns, payload, tcp, mine, nsd in differences[:5]))
    # The compiled path answered them (a few go to dnspython: names the zones mention).
    assert ours.server.statistics().compiled > QUERIES * 0.8
