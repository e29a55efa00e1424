"""Hypothesis: generated requests, pipelined and cut anywhere, round-trip through the core
(the parsed events are the requests that were sent) and through the whole handler over an
in-memory transport (the app sees exactly what was sent; responses come back in order)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxio.handlers.http import END_OF_MESSAGE, Data, HttpProtocol, Request, Response
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.clock import FakeClock
from muxio.testing.memory import memory_pair
from tests.http.harness import echo_request, feed_all, splits

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED = {"host", "content-length", "transfer-encoding", "expect", "connection", "upgrade",
            "te", "trailer", "keep-alive"}
PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@%"


@dataclass
class Sent:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    framing: str  # "none", "length" or "chunked"
    chunks: list[int]

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/{self.version}", *self.wire_headers()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.framing == "length":
            return head + self.body
        if self.framing == "chunked":
            out = [head]
            for piece in splits(self.body, self.chunks or [len(self.body) or 1]):
                out.append(b"%x\r\n%b\r\n" % (len(piece), piece))
            out.append(b"0\r\n\r\n")
            return b"".join(out)
        return head

    def wire_headers(self) -> list[str]:
        lines = ["Host: example.test", *(f"{name}: {value}" for name, value in self.headers)]
        if self.framing == "length":
            lines.append(f"Content-Length: {len(self.body)}")
        elif self.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
        if self.version == "1.0":
            lines.append("Connection: keep-alive")
        return lines


names = st.text(TCHAR, min_size=1, max_size=20).filter(lambda name: name.lower() not in RESERVED)
values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0,
                 max_size=30).flatmap(
    lambda text: st.just(text) if len(text) < 3 else st.sampled_from(
        [text, text[:1] + " " + text[1:]]))
segment = st.text(PATH_CHARS.replace("%", ""), min_size=0, max_size=12)


@st.composite
def requests(draw: st.DrawFn) -> Sent:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    path = "/" + "/".join(draw(st.lists(segment, max_size=4)))
    query = draw(st.one_of(st.none(), st.text(PATH_CHARS.replace("%", "") + "/?", max_size=20)))
    target = path if query is None else f"{path}?{query}"
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    headers = draw(st.lists(st.tuples(names, values), max_size=8))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    body = b"" if framing == "none" else draw(st.binary(max_size=3000))
    chunks = draw(st.lists(st.integers(1, 700), max_size=6))
    return Sent(method, target, version, headers, body, framing, chunks)


def expected_headers(sent: Sent) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode())
            for name, _, value in (line.partition(": ") for line in sent.wire_headers())]


OK = Response(200, (), b"ok")


@settings(max_examples=300, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(1, 200),
                                                             min_size=1, max_size=30))
def test_generated_requests_round_trip_through_the_core(sent: list[Sent],
                                                         cuts: list[int]) -> None:
    wire = b"".join(request.encode() for request in sent)
    events = feed_all(wire, splits(wire, cuts), respond=lambda request: OK)
    parsed: list[tuple[Request, bytes]] = []
    for event in events:
        if isinstance(event, Request):
            parsed.append((event, b""))
        elif isinstance(event, Data):
            request, body = parsed[-1]
            parsed[-1] = (request, body + event.data)
        else:
            assert event is END_OF_MESSAGE, event
    assert len(parsed) == len(sent)
    for (request, body), original in zip(parsed, sent, strict=True):
        assert request.method == original.method
        assert request.target == original.target.encode()
        assert request.http_version == original.version
        assert request.raw_headers == expected_headers(original)
        assert request.keep_alive
        assert body == original.body


class Collector(Protocol):
    """The client side of the in-memory pair: sends pieces, gathers the responses."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.received = bytearray()
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        for piece in self.pieces:
            transport.write(piece)

    def data_received(self, data: bytes) -> None:
        self.received += data


class _Responses:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.statuses: list[int] = []
        self.bodies: list[bytes] = []
        self._body = bytearray()

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())
        self.bodies.append(bytes(self._body))
        self._body.clear()


def parse_responses(data: bytes) -> tuple[list[int], list[bytes]]:
    sink = _Responses()
    sink.parser.feed_data(data)
    return sink.statuses, sink.bodies


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(1, 300),
                                                             min_size=1, max_size=20))
def test_generated_requests_round_trip_through_the_handler(backend: str, sent: list[Sent],
                                                            cuts: list[int]) -> None:
    wire = b"".join(request.encode() for request in sent)
    with Loop(backend, clock=FakeClock()) as loop:
        client = Collector(list(splits(wire, cuts)))
        server = HttpProtocol(echo_request, loop)
        memory_pair(loop, client, server)
        loop.run_until(lambda: len(parse_responses(bytes(client.received))[1]) >= len(sent),
                       timeout=60)
        statuses, bodies = parse_responses(bytes(client.received))
    assert len(bodies) == len(sent)
    for status, body, original in zip(statuses, bodies, sent, strict=True):
        assert status == 200
        seen = json.loads(body)
        path, _, query = original.target.partition("?")
        assert (seen["method"], seen["path"], seen["query"]) == (original.method, path, query)
        assert seen["body_length"] == len(original.body)
        assert seen["body_sha256"] == hashlib.sha256(original.body).hexdigest()
        assert [tuple(pair) for pair in seen["headers"]] == [
            (name.decode(), value.decode()) for name, value in expected_headers(original)]
