"""The handler shell over an in-memory transport with a fake clock: timeouts to the
millisecond without waiting, flow control, pipelining back-pressure, half-close."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from muxio.handlers.http import HttpConfig, HttpProtocol, Request, Response
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.clock import FakeClock
from muxio.testing.memory import memory_pair
from tests.http.harness import build_request, make_app, pattern

CONFIG = HttpConfig(header_timeout=5.0, keepalive_timeout=3.0, body_timeout=4.0,
                    linger_timeout=2.0)


class Peer(Protocol):
    """The client end: records what arrives and when (on the loop's clock)."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.transport: Transport | None = None
        self.received = bytearray()
        self.first_byte_at: float | None = None
        self.eof_at: float | None = None
        self.lost_at: float | None = None
        self.lost_error: Exception | None = None
        self.paused = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = self.loop.time()
        self.received += data

    def eof_received(self) -> bool:
        self.eof_at = self.loop.time()
        return True  # keep our side open: the tests decide when the client closes

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_at = self.loop.time()
        self.lost_error = exc

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def responses(self) -> int:
        return bytes(self.received).count(b"HTTP/1.1 ")


def pair(loop: Loop, app: object = None,
         config: HttpConfig = CONFIG) -> tuple[Peer, HttpProtocol]:
    client = Peer(loop)
    server = HttpProtocol(app or make_app(), loop, config)  # type: ignore[arg-type]
    memory_pair(loop, client, server)
    return client, server


@pytest.fixture
def loop(backend: str) -> Iterator[Loop]:
    with Loop(backend, clock=FakeClock()) as running:
        yield running


def test_slowloris_head_gets_408_at_the_header_timeout(loop: Loop) -> None:
    client, _ = pair(loop)
    start = loop.time()
    request = build_request("GET", "/")
    for index, byte in enumerate(request[:-1]):  # one byte a second, never finished
        loop.call_later(index * 1.0, client.send, bytes([byte]))
    loop.run_until(lambda: client.eof_at is not None, timeout=60)
    assert bytes(client.received).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close\r\n" in client.received
    assert client.first_byte_at == pytest.approx(start + CONFIG.header_timeout)


def test_no_request_at_all_is_closed_at_the_header_timeout(loop: Loop) -> None:
    client, _ = pair(loop)
    start = loop.time()
    loop.run_until(lambda: client.eof_at is not None, timeout=60)
    assert client.received == b""
    assert client.eof_at == pytest.approx(start + CONFIG.header_timeout)


def test_stray_newlines_do_not_extend_the_deadline(loop: Loop) -> None:
    client, _ = pair(loop)
    start = loop.time()
    for index in range(20):
        loop.call_later(index * 1.0, client.send, b"\r\n")
    loop.run_until(lambda: client.eof_at is not None, timeout=60)
    assert client.eof_at == pytest.approx(start + CONFIG.header_timeout)


def test_idle_keepalive_connection_is_closed(loop: Loop) -> None:
    client, _ = pair(loop)
    loop.call_later(1.0, client.send, build_request())
    loop.run_until(lambda: client.responses() == 1, timeout=60)
    answered = loop.time()
    loop.call_later(2.0, client.send, build_request())  # inside the keep-alive window
    loop.run_until(lambda: client.responses() == 2, timeout=60)
    second = loop.time()
    assert second == pytest.approx(answered + 2.0)
    loop.run_until(lambda: client.eof_at is not None, timeout=60)
    assert client.eof_at == pytest.approx(second + CONFIG.keepalive_timeout)
    assert client.responses() == 2  # an idle close sends nothing


def test_stalled_body_gets_408_at_the_body_timeout(loop: Loop) -> None:
    client, _ = pair(loop)
    client.send(build_request("POST", "/echo", headers=[("Content-Length", "10")]))
    loop.call_later(1.0, client.send, b"12345")
    loop.run_until(lambda: client.eof_at is not None, timeout=60)
    assert bytes(client.received).startswith(b"HTTP/1.1 408 ")
    assert client.first_byte_at == pytest.approx(1.0 + CONFIG.body_timeout, abs=0.01)


def test_a_client_that_never_stops_sending_after_an_error_is_dropped(loop: Loop) -> None:
    client, _ = pair(loop)
    client.send(b"\x00garbage\r\n\r\n")
    for index in range(100):
        loop.call_later(0.1 * index, client.send, b"more garbage")
    loop.run_until(lambda: client.lost_at is not None, timeout=60)
    assert bytes(client.received).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert client.eof_at is not None and client.eof_at < 0.1  # half-closed at once
    assert client.lost_at == pytest.approx(CONFIG.linger_timeout, abs=0.2)


def test_after_an_error_the_server_closes_when_the_client_does(loop: Loop) -> None:
    client, _ = pair(loop)
    client.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host
    loop.run_until(lambda: client.eof_at is not None, timeout=60)
    assert bytes(client.received).startswith(b"HTTP/1.1 400 ")
    assert client.transport is not None
    client.transport.close()
    loop.run_until(lambda: client.lost_at is not None, timeout=60)
    assert client.lost_at is not None and client.lost_at < CONFIG.linger_timeout


def test_large_streamed_body_follows_the_readers_pace(loop: Loop) -> None:
    produced: list[int] = []
    size = 4 * 1024 * 1024

    def big(request: Request) -> Response:
        def pieces() -> Iterator[bytes]:
            for offset in range(0, size, 65536):
                produced.append(offset)
                yield pattern(offset, 65536)
        return Response(200, (), pieces(), content_length=size)

    client, _ = pair(loop, big)
    assert client.transport is not None
    client.transport.pause_reading()
    client.send(build_request())
    loop.run_until(lambda: len(produced) > 0, timeout=60)
    for _ in range(50):
        loop.run_once(0)
    # The reader is paused: the server stopped pulling after about the high-water mark.
    assert len(produced) <= 4, produced
    client.transport.resume_reading()
    def body_complete() -> bool:
        head_end = client.received.find(b"\r\n\r\n")
        return head_end >= 0 and len(client.received) - head_end - 4 >= size

    loop.run_until(body_complete, timeout=60)
    head, _, body = bytes(client.received).partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % size in head
    assert body == b"".join(pattern(offset, 65536) for offset in range(0, size, 65536))


def test_pipelined_flood_without_reading_is_bounded(loop: Loop) -> None:
    client, _ = pair(loop)
    assert client.transport is not None
    client.transport.pause_reading()
    for _ in range(50):
        client.send(build_request("GET", "/stream?200000"))
    for _ in range(200):
        loop.run_once(0)
    assert client.transport.get_write_buffer_size() > 0  # the server stopped reading
    assert client.responses() == 0
    client.transport.resume_reading()
    loop.run_until(lambda: client.responses() == 50, timeout=120)
    loop.run_until(lambda: not client.transport.get_write_buffer_size(), timeout=60)


def test_half_closed_client_still_gets_every_pipelined_response(loop: Loop) -> None:
    client, _ = pair(loop)
    assert client.transport is not None
    client.send(build_request("GET", "/p/1") + build_request("GET", "/stream?300000")
                + build_request("GET", "/p/3"))
    client.transport.write_eof()
    loop.run_until(lambda: client.lost_at is not None or client.eof_at is not None,
                   timeout=60)
    data = bytes(client.received)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"GET /p/1?") < data.index(b"GET /p/3?")


def test_expect_100_continue_then_body(loop: Loop) -> None:
    client, _ = pair(loop)
    client.send(build_request("POST", "/echo", headers=[("Expect", "100-continue"),
                                                        ("Content-Length", "5")]))
    loop.run_until(lambda: b"\r\n\r\n" in client.received, timeout=60)
    assert bytes(client.received) == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"hello")
    loop.run_until(lambda: client.responses() == 2, timeout=60)
    assert bytes(client.received).endswith(b"\r\n\r\nhello")


def test_application_error_is_500_and_logged(loop: Loop,
                                             caplog: pytest.LogCaptureFixture) -> None:
    client, _ = pair(loop)
    with caplog.at_level(logging.ERROR, logger="muxio.http"):
        client.send(build_request("GET", "/boom"))
        loop.run_until(lambda: client.eof_at is not None, timeout=60)
    assert bytes(client.received).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert "the application failed on GET /boom" in caplog.text


def test_access_log_lines(loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    client, _ = pair(loop)
    with caplog.at_level(logging.INFO, logger="muxio.http.access"):
        client.send(build_request("GET", "/") + build_request("GET", "/stream?100")
                    + build_request("GET", "/missing"))
        loop.run_until(lambda: client.responses() == 3, timeout=60)
    lines = [record.getMessage() for record in caplog.records
             if record.name == "muxio.http.access"]
    assert lines == ['client "GET / HTTP/1.1" 200 14', 'client "GET /stream?100 HTTP/1.1" 200 0',
                     'client "GET /missing HTTP/1.1" 404 14']


def test_streamed_then_bytes_responses_on_one_connection(loop: Loop) -> None:
    client, _ = pair(loop)
    client.send(build_request("GET", "/stream?30000"))
    loop.run_until(lambda: client.received.endswith(b"0\r\n\r\n"), timeout=60)
    client.send(build_request("GET", "/p/2"))
    loop.run_until(lambda: client.responses() == 2, timeout=60)
    loop.run_until(lambda: client.received.endswith(b"GET /p/2?"), timeout=60)
    assert client.lost_at is None  # still kept alive
