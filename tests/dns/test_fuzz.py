"""Fuzz: random bytes and mutated valid queries, over UDP and TCP, on every backend. The
server never crashes: each input gets FORMERR/NOTIMP, a well-formed answer (when the
mutation still parses as a query), or silence; and other clients keep being answered."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dns.helpers import ServedDns, udp_query

DEADLINE = 10.0
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

_VALID = [
    dns.message.make_query(name, rdtype, use_edns=edns, payload=1232).to_wire()
    for name, rdtype, edns in [
        ("example.com", "A", 0), ("www.example.com", "A", None), ("big.example.com", "TXT", 0),
        ("foo.wild.example.com", "MX", 0), ("_sip._tcp.example.com", "SRV", None),
        ("sub.example.com", "NS", 0), ("1.2.0.192.in-addr.arpa", "PTR", 0),
        ("example.net", "A", None),
    ]
]


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    wire = bytearray(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(0, len(wire) - 1)))
        if kind == "flip" and wire:
            wire[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and wire:
            wire[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            wire[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del wire[position:position + draw(st.integers(1, 8))]
        else:
            del wire[draw(st.integers(0, len(wire))):]
    return bytes(wire)


inputs = st.one_of(st.binary(max_size=600), mutated_queries())


def check_reply(sent: bytes, reply: bytes | None) -> None:
    """What any input may get back."""
    if len(sent) < 12 or sent[2] & 0x80:
        assert reply is None, "no reply to fragments or to responses"
        return
    if reply is None:
        # Silence only where nothing can be answered; a parseable query always is.
        try:
            query = dns.message.from_wire(sent)
        except Exception:
            return
        assert len(query.question) != 1 or query.opcode() != dns.opcode.QUERY, \
            "a valid query got no answer"
        return
    assert reply[:2] == sent[:2], "the reply carries the query's ID"
    assert reply[2] & 0x80, "QR set"
    opcode = (sent[2] >> 3) & 0x0F
    if opcode != dns.opcode.QUERY:
        assert reply[3] & 0x0F == dns.rcode.NOTIMP
        return
    try:
        query = dns.message.from_wire(sent)
        valid = len(query.question) == 1
    except Exception:
        valid = False
    if not valid:
        assert reply[3] & 0x0F == dns.rcode.FORMERR
        return
    message = dns.message.from_wire(reply)  # a real answer must be well formed
    assert message.id == query.id


def probe_query() -> dns.message.Message:
    return dns.message.make_query("example.com", "SOA")


@pytest.fixture
def udp_client(served: ServedDns) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(DEADLINE)
        sock.connect(("127.0.0.1", served.port))
        yield sock
    # Other clients are still answered after all that.
    assert udp_query(probe_query(), served.port).rcode() == dns.rcode.NOERROR


@SETTINGS
@given(data=inputs)
def test_udp_fuzz(udp_client: socket.socket, data: bytes) -> None:
    udp_client.send(data)
    probe = probe_query()
    udp_client.send(probe.to_wire())
    replies = []
    while True:  # UDP on loopback keeps order: the probe's answer comes last
        reply = udp_client.recv(65535)
        if reply[:2] == probe.to_wire()[:2] and len(reply) > 12 and reply[12:] and \
                dns.message.from_wire(reply).question == probe.question:
            break
        replies.append(reply)
    assert len(replies) <= 1
    check_reply(data, replies[0] if replies else None)


def read_frames(sock: socket.socket) -> Iterator[bytes]:
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
            length = int.from_bytes(buffer[:2], "big")
            yield buffer[2:2 + length]
            buffer = buffer[2 + length:]


@SETTINGS
@given(data=inputs)
def test_tcp_fuzz_framed(served: ServedDns, data: bytes) -> None:
    """A framed fuzz message, then a real query on the same connection."""
    probe = probe_query()
    with socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE) as sock:
        sock.sendall(len(data).to_bytes(2, "big") + data
                     + len(probe.to_wire()).to_bytes(2, "big") + probe.to_wire())
        frames = []
        for frame in read_frames(sock):
            if frame[:2] == probe.to_wire()[:2] and frame[12:] and \
                    dns.message.from_wire(frame).question == probe.question:
                break
            frames.append(frame)
        else:
            # The server closed the connection: only for a message too short to answer.
            assert len(data) < 12, "closed the connection on an answerable message"
    assert len(frames) <= 1
    check_reply(data, frames[0] if frames else None)


@SETTINGS
@given(data=st.binary(min_size=1, max_size=3000))
def test_tcp_fuzz_raw_stream(served: ServedDns, data: bytes) -> None:
    """Arbitrary bytes on a TCP stream (bogus lengths included), then EOF: the server
    answers whatever frames were complete, and closes."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        for frame in read_frames(sock):
            assert len(frame) >= 12
            assert frame[2] & 0x80
    assert udp_query(probe_query(), served.port).rcode() == dns.rcode.NOERROR
