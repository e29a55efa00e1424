"""The sans-I/O core alone: bytes in, events out, in every split; limits; responses."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime

import pytest

from muxio.handlers.http import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    BadRequestError,
    Data,
    DateCache,
    ExpectationFailedError,
    HeaderFieldsTooLargeError,
    HttpConfig,
    HttpError,
    HttpUsageError,
    HttpVersionNotSupportedError,
    IncompleteRequestError,
    MissingHostError,
    NotImplementedTransferCodingError,
    Ours,
    PayloadTooLargeError,
    Phase,
    Request,
    RequestSmugglingError,
    Response,
    ServerConnection,
    UriTooLongError,
)
from tests.http.harness import describe, drain, feed_all, splits

OK = Response(200, (("Content-Type", "text/plain"),), b"ok")

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n"
POST_LENGTH = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
POST_CHUNKED = (b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
GET_10_KEEPALIVE = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
CORPUS = [GET, POST_LENGTH, POST_CHUNKED, GET_10_KEEPALIVE,
          b"\r\n" + GET,  # a stray CRLF between messages is tolerated (RFC 9112 2.2)
          b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
          b"GET http://example.com/abs?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
          b"PUT /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"]
PIPELINE = b"".join(CORPUS)


def every_split(data: bytes, seed: int = 7) -> list[list[bytes]]:
    """All at once, byte by byte, in each two-piece split, and in random pieces."""
    rng = random.Random(seed)
    ways = [[data], [data[i:i + 1] for i in range(len(data))]]
    ways += [[data[:cut], data[cut:]] for cut in range(1, len(data))]
    for _ in range(20):
        ways.append(list(splits(data, [rng.randint(1, 40) for _ in range(50)])))
    return ways


def reference(data: bytes, config: HttpConfig | None = None) -> list[object]:
    return describe(feed_all(data, [data], config, lambda request: OK))


@pytest.mark.parametrize("data", [*CORPUS, PIPELINE],
                         ids=[*(f"corpus{i}" for i in range(len(CORPUS))), "pipeline"])
def test_every_split_gives_the_same_events(data: bytes) -> None:
    expected = reference(data)
    assert expected.count("END_OF_MESSAGE") == data.count(b"HTTP/1.")
    for pieces in every_split(data):
        assert describe(feed_all(data, pieces, respond=lambda request: OK)) == expected


def test_get_request_fields() -> None:
    [request, end] = feed_all(GET, [GET])
    assert isinstance(request, Request)
    assert (request.method, request.target, request.path, request.query) == (
        "GET", b"/a?b=1", "/a", "b=1")
    assert request.http_version == "1.1" and request.keep_alive
    assert request.headers.get("user-agent") == "t"
    assert request.headers.get("HOST") == "x"
    assert request.headers.get("missing") is None
    assert end is END_OF_MESSAGE


def test_bodies_by_length_and_chunked_match() -> None:
    for data in (POST_LENGTH, POST_CHUNKED):
        events = feed_all(data, [data])
        assert isinstance(events[0], Request)
        assert events[1] == Data(b"hello world")
        assert events[2] is END_OF_MESSAGE


def test_chunked_trailers_are_dropped_not_mixed_into_headers() -> None:
    [request, *_] = feed_all(POST_CHUNKED, [POST_CHUNKED])
    assert isinstance(request, Request)
    assert request.headers.get("X-Trailer") is None


def test_absolute_and_asterisk_targets() -> None:
    events = feed_all(PIPELINE, [PIPELINE], respond=lambda request: OK)
    requests = [event for event in events if isinstance(event, Request)]
    paths = [(request.method, request.path, request.query) for request in requests]
    assert ("OPTIONS", "*", "") in paths
    assert ("GET", "/abs", "q") in paths


@pytest.mark.parametrize(("data", "keep_alive"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
])
def test_keep_alive_rules(data: bytes, keep_alive: bool) -> None:
    conn = ServerConnection()
    conn.receive_data(data)
    request = conn.next_event()
    assert isinstance(request, Request) and request.keep_alive is keep_alive
    assert conn.next_event() is END_OF_MESSAGE
    out = conn.respond(OK, 0.0)
    assert (b"Connection: close\r\n" in out) is (not keep_alive)
    assert (b"Connection: keep-alive\r\n" in out) is (keep_alive and b"HTTP/1.0" in data)
    assert conn.must_close is (not keep_alive)
    assert conn.our_state is (Ours.IDLE if keep_alive else Ours.MUST_CLOSE)


def test_response_bytes_have_status_server_date_length() -> None:
    conn = ServerConnection(HttpConfig(server_name="unit"))
    conn.receive_data(GET)
    drain(conn)
    out = conn.respond(OK, 784111777.0)
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Server: unit" in lines
    assert "Date: Sun, 06 Nov 1994 08:49:37 GMT" in lines
    assert "Content-Length: 2" in lines and body == b"ok"


def test_head_response_has_length_but_no_body() -> None:
    conn = ServerConnection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(conn)
    out = conn.respond(OK, 0.0)
    assert out.endswith(b"\r\n\r\n") and b"Content-Length: 2\r\n" in out


def test_pipelined_requests_wait_for_the_previous_response() -> None:
    conn = ServerConnection()
    conn.receive_data(GET + POST_LENGTH + GET)
    first = conn.next_event()
    assert isinstance(first, Request) and first.method == "GET"
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.next_event() is PAUSED  # the POST waits for our answer to the GET
    assert conn.has_buffered_events
    conn.respond(OK, 0.0)
    second = conn.next_event()
    assert isinstance(second, Request) and second.method == "POST"
    assert conn.next_event() == Data(b"hello world")
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.next_event() is PAUSED
    conn.respond(OK, 0.0)
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.next_event() is NEED_DATA  # nothing queued behind the last one
    conn.respond(OK, 0.0)
    assert conn.next_event() is NEED_DATA


def test_eof_between_messages_and_in_the_middle() -> None:
    assert feed_all(GET, [GET], respond=lambda request: OK, eof=True)[-1] is CONNECTION_CLOSED
    events = feed_all(GET[:10], [GET[:10]], eof=True)
    assert isinstance(events[-1], IncompleteRequestError)
    assert events[-1].status_hint == 400


def test_connection_closed_waits_for_the_response() -> None:
    conn = ServerConnection()
    conn.receive_data(GET)
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.next_event() is PAUSED
    conn.respond(OK, 0.0)
    assert conn.next_event() is CONNECTION_CLOSED


def test_phases_follow_the_parser() -> None:
    conn = ServerConnection()
    assert conn.their_phase is Phase.IDLE
    conn.receive_data(POST_LENGTH[:5])
    assert conn.their_phase is Phase.HEAD
    conn.receive_data(POST_LENGTH[5:-3])
    assert conn.their_phase is Phase.BODY
    conn.receive_data(POST_LENGTH[-3:])
    assert conn.their_phase is Phase.IDLE
    conn.receive_data(b"")
    assert conn.their_phase is Phase.CLOSED


def test_expect_100_continue() -> None:
    head = (b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5\r\n\r\n")
    conn = ServerConnection()
    conn.receive_data(head)
    request = conn.next_event()
    assert isinstance(request, Request) and request.expect_continue
    assert conn.send_continue() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.send_continue() == b""  # once
    conn.receive_data(b"hello")
    assert conn.next_event() == Data(b"hello")
    assert conn.next_event() is END_OF_MESSAGE
    # The body already arrived: no 100 for a request that sent it without waiting.
    conn.respond(OK, 0.0)
    conn.receive_data(head + b"hello")
    assert isinstance(conn.next_event(), Request)
    assert conn.send_continue() == b""


def test_expect_on_http_10_or_without_body_is_ignored() -> None:
    for data in (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
                 b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"):
        [request, *_] = feed_all(data, [data])
        assert isinstance(request, Request) and not request.expect_continue


def test_upgrade_is_ignored_and_the_next_request_parsed() -> None:
    data = (b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            + GET)
    for pieces in every_split(data)[:5]:
        events = feed_all(data, pieces, respond=lambda request: OK)
        assert [e.target for e in events if isinstance(e, Request)] == [b"/ws", b"/a?b=1"]


# -- limits and malformed input ------------------------------------------------------------

SMALL = HttpConfig(max_target_size=64, max_head_size=512, max_headers=8, max_body_size=100)
BAD: list[tuple[str, bytes, type[HttpError], int]] = [
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", BadRequestError, 400),
    ("http09-simple", b"GET /\r\n\r\n", HttpVersionNotSupportedError, 505),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", BadRequestError, 400),
    ("bare-lf", b"GET / HTTP/1.1\nHost: x\n\n", BadRequestError, 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n", BadRequestError, 400),
    ("nul-in-name", b"GET / HTTP/1.1\r\nHo\x00st: x\r\n\r\n", BadRequestError, 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", BadRequestError, 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", BadRequestError, 400),
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", MissingHostError, 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", MissingHostError, 400),
    ("cl-then-te", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", RequestSmugglingError, 400),
    ("te-then-cl", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   b"Content-Length: 3\r\n\r\n0\r\n\r\n", RequestSmugglingError, 400),
    ("two-cl", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
               b"abcd", RequestSmugglingError, 400),
    ("two-te", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BadRequestError, 400),
    ("te-list", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                b"0\r\n\r\n", NotImplementedTransferCodingError, 501),
    ("te-identity", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
     NotImplementedTransferCodingError, 501),
    ("cl-negative", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
     BadRequestError, 400),
    ("cl-list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
     BadRequestError, 400),
    ("chunk-size-invalid", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"zz\r\n", BadRequestError, 400),
    ("chunk-size-overflow", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"fffffffffffffffffffff\r\n", BadRequestError, 400),
    ("chunk-no-crlf", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabcX\r\n", BadRequestError, 400),
    ("http2", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", HttpVersionNotSupportedError, 505),
    ("http09", b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", HttpVersionNotSupportedError, 505),
    ("expect-other", b"POST / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 1\r\n"
                     b"\r\nx", ExpectationFailedError, 417),
    ("upgrade-with-body", b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                          b"Upgrade: h2c\r\nContent-Length: 3\r\n\r\nabc", BadRequestError, 400),
    ("target-too-long", b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     UriTooLongError, 414),
    ("too-many-headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: y\r\n" % i for i in range(20)) + b"\r\n", HeaderFieldsTooLargeError, 431),
    ("head-too-large", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 600 + b"\r\n\r\n",
     HeaderFieldsTooLargeError, 431),
    ("declared-body-too-large", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
     PayloadTooLargeError, 413),
    ("chunked-body-too-large", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               b"\r\n40\r\n" + b"z" * 64 + b"\r\n40\r\n" + b"z" * 64 + b"\r\n",
     PayloadTooLargeError, 413),
]


@pytest.mark.parametrize(("name", "data", "error", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_its_error_in_every_split(name: str, data: bytes,
                                                   error: type[HttpError], status: int) -> None:
    for pieces in every_split(data)[:60]:
        events = feed_all(data, pieces, SMALL, respond=lambda request: OK)
        assert events, pieces
        last = events[-1]
        assert type(last) is error, (pieces, describe(events))
        assert isinstance(last, HttpError) and last.status_hint == status
        assert last.message  # an actionable message, not an empty one


def test_error_waits_behind_earlier_pipelined_requests() -> None:
    conn = ServerConnection()
    conn.receive_data(GET + GET + b"\x00garbage")
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.next_event() is PAUSED
    conn.respond(OK, 0.0)
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.next_event() is PAUSED  # the error is the third message's: answer #2 first
    conn.respond(OK, 0.0)
    with pytest.raises(BadRequestError):
        conn.next_event()
    with pytest.raises(BadRequestError):
        conn.next_event()  # the error state sticks
    out = conn.error_response(BadRequestError("x"), 0.0)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in out
    assert conn.must_close


def test_a_header_that_never_ends_is_refused_within_one_chunk_of_the_limit() -> None:
    """llhttp buffers an unfinished field inside itself: the core must count those bytes."""
    config = HttpConfig(max_head_size=4096)
    conn = ServerConnection(config)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    fed = 0
    while conn.their_phase is Phase.HEAD:
        conn.receive_data(b"v" * 100)
        fed += 100
        assert fed <= config.max_head_size + 100
    with pytest.raises(HeaderFieldsTooLargeError):
        conn.next_event()


def test_a_target_fed_byte_by_byte_is_refused_at_the_limit() -> None:
    conn = ServerConnection(HttpConfig(max_target_size=50))
    conn.receive_data(b"GET /")
    for _ in range(60):
        conn.receive_data(b"a")
    with pytest.raises(UriTooLongError):
        conn.next_event()


def test_data_after_an_error_is_ignored() -> None:
    conn = ServerConnection()
    conn.receive_data(b"\x00\x01")
    conn.receive_data(GET)
    conn.receive_data(b"")
    with pytest.raises(BadRequestError):
        conn.next_event()
    assert conn.their_phase is Phase.ERROR


# -- streamed responses and misuse ----------------------------------------------------------


def ready(data: bytes = GET) -> ServerConnection:
    conn = ServerConnection()
    conn.receive_data(data)
    drain(conn)
    return conn


def test_chunked_response_for_http_11() -> None:
    conn = ready()
    head = conn.start_response(Response(200, (), iter([b"ab", b"c"])), 0.0)
    assert b"Transfer-Encoding: chunked\r\n" in head and b"Content-Length" not in head
    body = conn.send_body(b"ab") + conn.send_body(b"") + conn.send_body(b"c")
    assert body + conn.end_response() == b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"
    assert conn.our_state is Ours.IDLE


def test_unknown_length_on_http_10_is_close_delimited() -> None:
    conn = ready(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = conn.start_response(Response(200, (), iter([b"ab"])), 0.0)
    assert b"Transfer-Encoding" not in head and b"Connection: close\r\n" in head
    assert conn.send_body(b"ab") == b"ab"
    assert conn.end_response() == b""
    assert conn.must_close


def test_streamed_response_with_length() -> None:
    conn = ready()
    head = conn.start_response(Response(200, (), iter([]), content_length=3), 0.0)
    assert b"Content-Length: 3\r\n" in head
    assert conn.send_body(b"ab") == b"ab"
    with pytest.raises(HttpUsageError, match="exceeds"):
        conn.send_body(b"cd")
    with pytest.raises(HttpUsageError, match="short"):
        conn.end_response()
    conn.send_body(b"c")
    assert conn.end_response() == b""


def test_head_streamed_response_sends_no_body() -> None:
    conn = ready(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = conn.start_response(Response(200, (), iter([]), content_length=10), 0.0)
    assert b"Content-Length: 10" in head and not conn.sending_body
    assert conn.send_body(b"x" * 10) == b""
    assert conn.end_response() == b""


def test_out_of_order_calls_are_usage_errors() -> None:
    conn = ServerConnection()
    with pytest.raises(HttpUsageError, match="out of order"):
        conn.respond(OK, 0.0)  # no request yet
    conn = ready()
    conn.respond(OK, 0.0)
    with pytest.raises(HttpUsageError):
        conn.respond(OK, 0.0)  # two responses to one request
    conn = ready()
    with pytest.raises(HttpUsageError, match="streamed body"):
        conn.respond(Response(200, (), iter([b"x"])), 0.0)


def test_response_values_are_checked() -> None:
    with pytest.raises(ValueError, match="set by the server"):
        Response(200, (("Content-Length", "3"),), b"abc")
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        Response(200, (("X", "a\r\nInjected: 1"),))
    with pytest.raises(ValueError, match="token"):
        Response(200, (("Bad Name", "v"),))
    with pytest.raises(ValueError, match="cannot have a body"):
        Response(304, (), b"x")
    with pytest.raises(ValueError, match="100-999"):
        Response(42)


def test_no_body_statuses_have_no_length() -> None:
    conn = ready()
    out = conn.respond(Response(304, (("ETag", '"x"'),)), 0.0)
    assert b"Content-Length" not in out and out.endswith(b"\r\n\r\n")


def test_date_cache_formats_once_per_second() -> None:
    cache = DateCache()
    line = cache.line(1_700_000_000.2)
    assert line is cache.line(1_700_000_000.9)
    assert line != cache.line(1_700_000_001.0)
    value = line.decode().removeprefix("Date: ").strip()
    assert parsedate_to_datetime(value).timestamp() == 1_700_000_000


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="header_timeout"):
        HttpConfig(header_timeout=0)
    with pytest.raises(ValueError, match="max_body_size"):
        HttpConfig(max_body_size=0)
    with pytest.raises(ValueError, match="server_name"):
        HttpConfig(server_name="bad\r\n")


def test_next_complete_request_takes_a_whole_bodiless_request_at_once() -> None:
    conn = ServerConnection()
    conn.receive_data(GET + POST_LENGTH + GET[:10])
    request = conn.next_complete_request()
    assert isinstance(request, Request) and request.method == "GET"
    assert conn.our_state is Ours.RESPOND
    assert conn.next_complete_request() is None  # ours is busy: the POST waits
    conn.respond(OK, 0.0)
    assert conn.next_complete_request() is None  # the POST has a body: next_event's turn
    post = conn.next_event()
    assert isinstance(post, Request) and post.method == "POST"
    assert conn.next_event() == Data(b"hello world")
    assert conn.next_event() is END_OF_MESSAGE
    conn.respond(OK, 0.0)
    assert conn.next_complete_request() is None  # the last GET is incomplete
    assert conn.next_event() is NEED_DATA
    conn.receive_data(GET[10:])
    assert conn.next_complete_request() is not None


def answer(conn: ServerConnection, wire: bytes, response: Response, now: float) -> bytes:
    """Feed one whole request, take it, answer it."""
    conn.receive_data(wire)
    request = conn.next_complete_request()
    assert isinstance(request, Request), request
    return conn.respond(response, now)


def test_a_reused_response_is_right_for_every_server_date_and_connection() -> None:
    """The wire bytes of a reused Response are cached per (server name, Date line,
    Connection ending): alternating servers, a HEAD in between (which encodes the head
    alone), a new second and a closing request each get their own bytes."""
    shared = Response(200, (("Content-Type", "text/plain"),), b"hello")
    alpha = ServerConnection(HttpConfig(server_name="alpha"))
    beta = ServerConnection(HttpConfig(server_name="beta"))
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
    first = answer(alpha, get, shared, 1_700_000_000.5)
    assert b"Server: alpha\r\n" in first and first.endswith(b"\r\n\r\nhello")
    assert answer(alpha, get, shared, 1_700_000_000.7) is first  # cached
    assert b"Server: beta\r\n" in answer(beta, head, shared, 1_700_000_000.7)
    assert answer(alpha, get, shared, 1_700_000_000.8) == first  # not beta's head
    later = answer(alpha, get, shared, 1_700_000_001.0)
    assert later != first and later.replace(later[later.index(b"Date"):][:37], b"") == \
        first.replace(first[first.index(b"Date"):][:37], b"")
    closing = answer(alpha, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     shared, 1_700_000_001.0)
    assert b"Connection: close\r\n" in closing and alpha.must_close


@pytest.mark.parametrize(("wire", "version", "keep_alive"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "1.1", True),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "1.1", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", "1.1", True),
    (b"GET / HTTP/1.0\r\n\r\n", "1.0", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "1.0", True),
    (b"GET / HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n", "1.0", True),
    (b"GET / HTTP/1.0\r\nUser-Agent: t\r\n\r\n", "1.0", False),
])
def test_the_version_is_right_however_keep_alive_was_decided(
        wire: bytes, version: str, keep_alive: bool) -> None:
    """HTTP/1.1 is inferred from llhttp's keep-alive default when no Connection header
    spoke; any Connection or Proxy-Connection header makes the core ask llhttp."""
    conn = ServerConnection()
    conn.receive_data(wire)
    request = conn.next_complete_request()
    assert isinstance(request, Request)
    assert (request.http_version, request.keep_alive) == (version, keep_alive)
