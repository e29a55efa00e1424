"""The sans-I/O HTTP/1.1 server core: bytes in, events out; responses in, bytes out.

Theory of operation
-------------------
`ServerConnection` never touches a socket or a clock. The shell (protocol.py, or a test)
feeds it what arrived with `receive_data(data)` (`b""` means EOF) and pulls events with
`next_event()`; it turns responses into bytes with `respond()` or `start_response()` /
`send_body()` / `end_response()`, and gives it the wall-clock time for the Date header.

Parsing is httptools (llhttp), which parses every complete message in a chunk at once and
calls back per element. The callbacks only append events to a queue, so pipelined requests
wait there, in order, until the response to the one before them has ended (`PAUSED`).

Parsing ahead is bounded: a read holding more than `pipeline_depth` request heads (each
ends with CRLF CRLF; llhttp accepts no other ending) is kept as bytes, the *backlog*, and
fed to the parser `pipeline_depth` heads at a time, as the shell asks for events. So 64 KiB
of 27-byte pipelined requests costs 64 KiB and at most `pipeline_depth` Request objects,
not 2400 of them; `has_buffered_events` stays true while a backlog is left, and the shell
keeps reading paused until it is used up. A read with fewer heads (every non-pipelining
client) is fed at once, with no copy.
A protocol error is queued as well, behind the requests that preceded it, and raised by
`next_event()` when its turn comes: an `HttpError` whose `status_hint` is the status to
answer with (`error_response()`), after which the connection must close.

Two sides, two small state machines:

- theirs (the parser's position), driven by llhttp's callbacks: IDLE -> HEAD (first byte
  of a request) -> BODY (head complete) -> IDLE (message complete); CLOSED at EOF, ERROR
  at a protocol error. The shell reads `their_phase` to pick its timeout.
- ours (the response to the request handed out last): the `_OUR_TRANSITIONS` table is
  every rule; the hot paths (`next_event`, `respond`) test the one state they allow
  directly and fall back to the table for the error.

Limits llhttp does not enforce are checked here, with memory bounded: the request target
and every header field are counted as they complete, and the bytes of a head still
unfinished after a read are counted too (llhttp holds an unfinished field inside itself),
so a head larger than `max_head_size` is refused at once, or one read later when it began
behind a pipelined request; it is never buffered whole. Inside a chunked body, the bytes
that make no progress (a chunk-size line's extensions, which llhttp skips without a
callback; a trailer field, which httptools holds until it ends) are counted the same way
and refused (400) past `max_head_size`.
"""

from __future__ import annotations

import enum
from collections import deque
from email.utils import formatdate
from typing import TypeAlias

import httptools

from muxio.handlers.http.config import HttpConfig
from muxio.handlers.http.errors import (
    BadRequestError,
    ExpectationFailedError,
    HeaderFieldsTooLargeError,
    HttpError,
    HttpUsageError,
    HttpVersionNotSupportedError,
    IncompleteRequestError,
    MissingHostError,
    NotImplementedTransferCodingError,
    PayloadTooLargeError,
    RequestSmugglingError,
    UriTooLongError,
)
from muxio.handlers.http.events import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    ConnectionClosedType,
    Data,
    EndOfMessageType,
    NeedDataType,
    PausedType,
)
from muxio.handlers.http.messages import Request, Response, reason_phrase, status_allows_body

Event: TypeAlias = (Request | Data | EndOfMessageType | ConnectionClosedType | NeedDataType
                    | PausedType)


class Phase(enum.Enum):
    """Where the parser is in the client's byte stream."""

    IDLE = "idle"  # between messages: no byte of the next request yet
    HEAD = "head"  # inside a request line / header section
    BODY = "body"  # inside a request body
    CLOSED = "closed"  # the client sent EOF at a message boundary
    ERROR = "error"  # the client broke the protocol; nothing more is parsed


class Ours(enum.Enum):
    """Where we are in answering the request handed out last."""

    IDLE = "idle"  # no request to answer
    RESPOND = "respond"  # a request was handed out; no response bytes yet
    SEND_BODY = "send_body"  # the head went out; body pieces follow
    MUST_CLOSE = "must_close"  # the last response ended the connection


# Enum members as module constants: `Ours.IDLE` goes through EnumType.__getattr__ on
# every access (Python 3.11), a module global is one dict hit.
_OURS_IDLE, _OURS_RESPOND, _OURS_SEND_BODY, _OURS_MUST_CLOSE = (
    Ours.IDLE, Ours.RESPOND, Ours.SEND_BODY, Ours.MUST_CLOSE)

# (state, what the shell does) -> next state. Anything else is an HttpUsageError.
# "done" is the end of a response; it goes to IDLE or MUST_CLOSE (keep-alive decides).
_OUR_TRANSITIONS: dict[tuple[Ours, str], Ours] = {
    (_OURS_IDLE, "request"): _OURS_RESPOND,
    (_OURS_RESPOND, "continue"): _OURS_RESPOND,
    (_OURS_RESPOND, "done"): _OURS_IDLE,
    (_OURS_RESPOND, "head"): _OURS_SEND_BODY,
    (_OURS_SEND_BODY, "body"): _OURS_SEND_BODY,
    (_OURS_SEND_BODY, "done"): _OURS_IDLE,
    (_OURS_IDLE, "error"): _OURS_MUST_CLOSE,
    (_OURS_RESPOND, "error"): _OURS_MUST_CLOSE,
}

_IDLE, _HEAD, _BODY, _CLOSED, _ERROR = (Phase.IDLE, Phase.HEAD, Phase.BODY, Phase.CLOSED,
                                        Phase.ERROR)
_SMUGGLING_REASONS = ("Content-Length can't be present", "Transfer-Encoding can't be present",
                      "Duplicate Content-Length")
_INTERESTING_LENGTHS = frozenset({4, 6, 10, 14, 16, 17})
_VERSIONS = frozenset({"1.0", "1.1"})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE_LINE = b"Connection: close\r\n"
_CLOSE_END = b"Connection: close\r\n\r\n"
_KEEP_ALIVE_END = b"Connection: keep-alive\r\n\r\n"
_CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
_HEAD_END = b"\r\n\r\n"
_STATUS_LINES: dict[tuple[int, str], bytes] = {}
_METHOD_NAMES: dict[bytes, str] = {}
"""llhttp's method names (a fixed set of ~50) decoded once: one dict hit per request."""


def status_line(status: int, server_name: str) -> bytes:
    """`HTTP/1.1 <status> <reason>` and the Server header, cached per (status, server)."""
    line = _STATUS_LINES.get((status, server_name))
    if line is None:
        line = (f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"
                f"Server: {server_name}\r\n").encode("latin-1")
        _STATUS_LINES[(status, server_name)] = line
    return line


class DateCache:
    """The Date header line for a wall-clock time, formatted once per second.

    The state is one tuple, replaced at once, so concurrent readers never see a line from
    one second paired with another second.
    """

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[float, float, bytes] = (0.0, -1.0, b"")
        """(start, end, line): `line` is right for every time in [start, end). Two float
        comparisons per call on the hot path, no int() and no formatting."""

    def line(self, now: float) -> bytes:
        cached = self._cached
        if cached[0] <= now < cached[1]:
            return cached[2]
        second = int(now)
        line = b"Date: " + formatdate(second, usegmt=True).encode("ascii") + b"\r\n"
        self._cached = (float(second), float(second + 1), line)
        return line


SHARED_DATE_CACHE = DateCache()
"""One cache for every connection in the process (the date changes once a second)."""


class ServerConnection:
    """One HTTP/1.1 server connection's protocol state, with no I/O of its own."""

    __slots__ = (
        "config", "_parser", "_events", "their_phase", "our_state", "_error", "_callback_error",
        "_request", "_current_open", "_continue_sent", "_date", "_server_name",
        "_target", "_target_size", "_headers", "_head_size", "_head_fed", "_completed",
        "_content_length", "_transfer_encodings", "_hosts", "_expect_continue", "_special",
        "_body_size", "_body_seen", "_in_trailers", "_send_body",
        "_chunked", "_remaining", "_close_after", "_max_target", "_max_head",
        "_max_headers", "_max_body", "_response", "requests", "_depth", "_backlog",
        "_backlog_at", "_eof_pending", "_body_progress", "_body_stalled", "drained")

    def __init__(self, config: HttpConfig | None = None, *,
                 date_cache: DateCache | None = None) -> None:
        self.config = config = config or HttpConfig()
        self._max_target = config.max_target_size
        self._max_head = config.max_head_size
        self._max_headers = config.max_headers
        self._max_body = config.max_body_size
        self._depth = config.pipeline_depth
        self._backlog = b""
        """Received bytes not fed to the parser yet (from `_backlog_at` on); empty when
        everything received was parsed (so its truth is "a backlog is left")."""
        self._backlog_at = 0
        self._eof_pending = False  # EOF arrived behind a backlog
        self._body_progress = 0  # callbacks that consumed body bytes (see _feed)
        self._body_stalled = 0  # body-phase bytes fed since the last such callback
        self._server_name = config.server_name
        self._date = date_cache or SHARED_DATE_CACHE
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._events: deque[Event | HttpError] = deque()
        self.their_phase = _IDLE
        """Where the parser is in the client's bytes (read it; only the core sets it)."""
        self.our_state = _OURS_IDLE
        """Where we are in answering the request handed out last (read it; only the core
        sets it)."""
        self._error: HttpError | None = None
        self._callback_error: HttpError | None = None
        self._request: Request | None = None
        self._current_open = False  # a Request was handed out, its END_OF_MESSAGE not yet
        self._continue_sent = False
        self._head_fed = 0
        self._completed = 0
        self._send_body = True
        self._chunked = False
        self._remaining: int | None = None
        self._close_after = False
        self._response: Response | None = None
        self.requests = 0
        """Requests whose head has been parsed on this connection."""
        self.drained = False
        """Set by `next_complete_request` when it hands out a request: nothing else was
        buffered (no event, no backlog), so the next call would say `NEED_DATA`."""
        self._special = False
        self._expect_continue = False
        self._content_length: bytes | None = None
        self._transfer_encodings = 0
        self._body_size = 0
        self._body_seen = False
        self._in_trailers = False
        self._reset_head()

    def _reset_head(self) -> None:
        """Ready for the next request head: run once in __init__ and after each head is
        handed out, so that on_message_begin (every request) only moves the phase."""
        self._target = b""
        self._target_size = self._head_size = self._hosts = 0
        self._headers: list[tuple[bytes, bytes]] = []
        if self._special:  # Content-Length, Transfer-Encoding, Expect or Connection seen
            self._special = self._expect_continue = False
            self._content_length = None
            self._transfer_encodings = 0

    # -- state -------------------------------------------------------------------------

    @property
    def must_close(self) -> bool:
        """True once the last response ended the connection: close after sending it."""
        return self.our_state is _OURS_MUST_CLOSE

    @property
    def has_buffered_events(self) -> bool:
        """Events (requests, an error or EOF) are queued behind the current response, or
        received bytes wait to be parsed: the shell keeps reading paused meanwhile."""
        return bool(self._events) or bool(self._backlog)

    @property
    def queued_events(self) -> int:
        """Events parsed and not handed out yet (at most about `pipeline_depth` requests'
        worth: the rest waits as bytes, `backlog_size`)."""
        return len(self._events)

    @property
    def backlog_size(self) -> int:
        """Received bytes not parsed yet (at most about one read)."""
        return len(self._backlog) - self._backlog_at

    @property
    def current_request(self) -> Request | None:
        return self._request

    @property
    def last_response(self) -> Response | None:
        """The response started last (what an access log reports)."""
        return self._response

    @property
    def sending_body(self) -> bool:
        """After `start_response`: False when no body may follow (HEAD, 204, 304), so the
        shell need not produce one."""
        return self._send_body

    def _transition(self, action: str) -> None:
        try:
            self.our_state = _OUR_TRANSITIONS[(self.our_state, action)]
        except KeyError:
            raise HttpUsageError(
                f"cannot {action!r} while our side is {self.our_state.value!r}: the response "
                f"calls are out of order") from None

    # -- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the client; `b""` means the client closed its side (EOF).

        Never raises for bad input: errors are queued and raised by `next_event()`.
        Bytes holding more than `pipeline_depth` request heads are parsed later, as events
        are asked for (see the module docstring).
        """
        parser = self._parser
        phase = self.their_phase
        if parser is None or phase is _ERROR or phase is _CLOSED:
            return  # after an error or EOF, bytes have nowhere to go: the shell drains them
        if self._backlog:
            if data:
                self._backlog = self._backlog[self._backlog_at:] + bytes(data)
                self._backlog_at = 0
            else:
                self._eof_pending = True
            return
        if not data:
            self._receive_eof()
            return
        if type(data) is not bytes:
            data = bytes(data)  # transports give bytes; a caller's buffer may change
        events = self._events
        room = self._depth - len(events)
        # Each head ends with its own 4-byte CRLF CRLF: a read of at most 4 * room bytes
        # cannot hold more than `room` of them, so the count is skipped (a small request).
        if len(data) > 4 * room and data.count(_HEAD_END) > room:
            # More heads than may be parsed ahead (queued events count as heads: an
            # overestimate, on the safe side): keep the bytes, parse them as asked.
            self._backlog = data
            self._backlog_at = 0
            if not events:
                self._parse_backlog()
            return
        # _feed's hot path, inlined: a read of whole requests parses with no other call.
        completed_before = self._completed
        progress_before = self._body_progress
        try:
            parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError) as exc:
            self._feed_failed(exc, data, phase, completed_before, progress_before)
            return
        if self.their_phase is not _IDLE:
            self._fed(data, phase, completed_before, progress_before)

    def _parse_backlog(self) -> None:
        """Feed the parser the backlog up to its `pipeline_depth`-th head end."""
        backlog = self._backlog
        start = self._backlog_at
        end = start
        find = backlog.find
        for _ in range(self._depth):
            at = find(_HEAD_END, end)
            if at < 0:
                end = len(backlog)
                break
            end = at + 1  # search on from inside the match: overlapping ends count too
        else:
            end += 3
        if end >= len(backlog):
            self._backlog, self._backlog_at = b"", 0
            self._feed(memoryview(backlog)[start:] if start else backlog)
            if self._eof_pending:
                self._eof_pending = False
                self.receive_data(b"")
            return
        self._backlog_at = end
        self._feed(memoryview(backlog)[start:end])

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        """Parse `data` (callers checked that parsing may go on: after an error, EOF or
        close() there is no backlog left to feed). `receive_data` inlines this."""
        parser = self._parser
        assert parser is not None
        phase_before = self.their_phase
        completed_before = self._completed
        progress_before = self._body_progress
        try:
            parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError) as exc:
            self._feed_failed(exc, data, phase_before, completed_before, progress_before)
            return
        if self.their_phase is not _IDLE:
            self._fed(data, phase_before, completed_before, progress_before)

    def _feed_failed(self, exc: Exception, data: bytes | bytearray | memoryview,
                     phase_before: Phase, completed_before: int, progress_before: int) -> None:
        """feed_data raised: an Upgrade/CONNECT head (parse on after it) or an error."""
        parser = self._parser
        assert parser is not None
        while True:
            if isinstance(exc, httptools.HttpParserUpgrade):
                # llhttp stops after an Upgrade/CONNECT head. We never switch protocols:
                # the request is answered as HTTP (RFC 9110 7.8 lets a server ignore
                # Upgrade) and the bytes after its head are parsed as the next request.
                data = memoryview(data)[int(exc.args[0]):]
                if not data:
                    break
                try:
                    parser.feed_data(data)
                except (httptools.HttpParserUpgrade, httptools.HttpParserError) as again:
                    exc = again
                    continue
                break
            assert isinstance(exc, httptools.HttpParserError)
            self._fail(self._callback_error or _map_parser_error(exc))
            return
        if self.their_phase is not _IDLE:
            self._fed(data, phase_before, completed_before, progress_before)

    def _fed(self, data: bytes | bytearray | memoryview, phase_before: Phase,
             completed_before: int, progress_before: int) -> None:
        """After a feed that ended inside a message: bound what makes no progress."""
        phase = self.their_phase
        if phase is _BODY:
            # Bytes that made no progress in a body: a chunk extension or a trailer field
            # being received. Counted per feed (callbacks carry no offsets); a callback
            # that consumed body bytes restarts the count.
            if self._body_progress != progress_before:
                self._body_stalled = 0
            else:
                self._body_stalled += len(data)
                if self._body_stalled > self._max_head:
                    self._fail(BadRequestError(
                        f"a chunk-size line (its extensions) or a trailer field grew past "
                        f"{self._max_head} bytes (HttpConfig.max_head_size)"))
        elif phase is _HEAD:
            # The head is unfinished; llhttp may hold part of it inside (an unfinished
            # field). Count the bytes that surely belong to it: all of this read if the
            # head began before it or no earlier message ended in it; if one did, where
            # the head began is unknown, so count from the next read.
            if self._completed != completed_before:
                self._head_fed = 0
            elif phase_before is _HEAD:
                self._head_fed += len(data)
            else:
                self._head_fed = len(data)
            if self._head_fed > self._max_head:
                self._fail(HeaderFieldsTooLargeError(
                    f"the request head grew past {self._max_head} bytes "
                    f"(HttpConfig.max_head_size) before it ended"))

    def _receive_eof(self) -> None:
        if self.their_phase is _IDLE:
            self.their_phase = _CLOSED
            self._events.append(CONNECTION_CLOSED)
        else:
            self._fail(IncompleteRequestError(
                f"the client closed its side in the middle of a request "
                f"({self.their_phase.value} incomplete)"))

    def _fail(self, error: HttpError) -> None:
        self.their_phase = _ERROR
        self._callback_error = None
        self._backlog, self._backlog_at = b"", 0  # nothing after an error is parsed
        self._events.append(error)

    # -- httptools callbacks (called by the parser inside receive_data) -------------------

    def _raise(self, error: HttpError) -> None:
        self._callback_error = error
        raise error

    def on_message_begin(self) -> None:
        # The head fields were reset by _reset_head when the previous head was handed out.
        self.their_phase = _HEAD

    def on_url(self, piece: bytes) -> None:
        if self._target:
            self._target += piece  # rare: the target came in several reads
        else:
            self._target = piece
        self._target_size += len(piece)
        if self._target_size > self._max_target:
            self._raise(UriTooLongError(
                f"the request target is longer than {self._max_target} bytes "
                f"(HttpConfig.max_target_size)"))

    def on_header(self, name: bytes, value: bytes) -> None:
        length = len(name)
        self._head_size += length + len(value) + 4
        if self._head_size + self._target_size > self._max_head:
            self._raise(HeaderFieldsTooLargeError(
                f"the request head is larger than {self._max_head} bytes "
                f"(HttpConfig.max_head_size)"))
        if self._in_trailers:
            self._body_progress += 1
            return  # trailer fields are size-checked, then dropped
        headers = self._headers
        headers.append((name, value))
        if len(headers) > self._max_headers:
            self._raise(HeaderFieldsTooLargeError(
                f"more than {self._max_headers} header fields (HttpConfig.max_headers)"))
        if length in _INTERESTING_LENGTHS:  # host, expect, content-length, transfer-encoding,
            lower = name.lower()  # connection, proxy-connection
            if lower == b"host":
                self._hosts += 1
                return
            if length in {10, 16}:  # user-agent is 10 long too
                if lower in {b"connection", b"proxy-connection"}:
                    self._special = True  # keep-alive is not 1.1's default: see
                return  # on_headers_complete
            self._special = True
            if lower == b"content-length":
                self._content_length = value
            elif lower == b"transfer-encoding":
                self._transfer_encodings += 1
                if value.strip().lower() != b"chunked":
                    self._raise(NotImplementedTransferCodingError(
                        f"Transfer-Encoding {value.decode('latin-1')!r} is not supported; "
                        f"only 'chunked' is"))
            elif lower == b"expect":
                if value.strip().lower() != b"100-continue":
                    self._raise(ExpectationFailedError(
                        f"Expect {value.decode('latin-1')!r} is not supported; only "
                        f"'100-continue' is"))
                self._expect_continue = True

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        keep_alive = parser.should_keep_alive()
        if keep_alive and not self._special:
            # llhttp keeps alive by default only when major > 0 and minor > 0, which among
            # the versions it accepts (0.9, 1.0, 1.1, 2.0, 3.0) is 1.1; otherwise only a
            # Connection (or Proxy-Connection) header could have asked for it, and such a
            # header sets `_special`. (get_http_version formats a str on every call.)
            version = "1.1"
            if self._hosts != 1:
                self._raise(MissingHostError(
                    f"an HTTP/1.1 request needs exactly one Host header, got {self._hosts}"))
        else:
            version = parser.get_http_version()
            if version not in _VERSIONS:
                self._raise(HttpVersionNotSupportedError(
                    f"HTTP/{version} is not supported; this server speaks HTTP/1.0 and 1.1"))
            hosts = self._hosts
            if hosts != 1 and (version == "1.1" or hosts > 1):
                self._raise(MissingHostError(
                    f"an HTTP/{version} request needs exactly one Host header, got {hosts}"))
        target = self._target
        if self._special:
            expect_continue = self._check_framing(parser, version)
            self._special = self._expect_continue = False
            self._content_length = None
            self._transfer_encodings = 0
        else:
            expect_continue = False
        if not target:
            self._raise(BadRequestError("empty request target"))
        self.their_phase = _BODY
        self._in_trailers = True  # header fields from now on are trailers (chunked bodies)
        self._body_progress += 1
        self._body_size = 0
        self._body_seen = False
        self.requests += 1
        raw_method = parser.get_method()
        method = _METHOD_NAMES.get(raw_method)
        if method is None:
            method = _METHOD_NAMES[raw_method] = raw_method.decode("ascii")
        request = Request(method, target, version, self._headers, keep_alive)
        if expect_continue:
            request.expect_continue = True  # rare: the constructor's keyword costs a dict
        self._events.append(request)
        # Ready for the next head (what _reset_head does; inlined on the hot path, with
        # the Content-Length/Transfer-Encoding/Expect fields reset above).
        self._target = b""
        self._target_size = self._head_size = self._hosts = 0
        self._headers = []

    def _check_framing(self, parser: httptools.HttpRequestParser, version: str) -> bool:
        """Body framing checks (llhttp has already refused CL with TE and duplicate CLs).
        Returns whether the client waits for `100 Continue`."""
        if self._transfer_encodings > 1:
            self._raise(RequestSmugglingError("more than one Transfer-Encoding header"))
        has_body = self._transfer_encodings > 0
        if self._content_length is not None:
            length = int(self._content_length)  # llhttp has checked it is all digits
            if length > self._max_body:
                self._raise(PayloadTooLargeError(
                    f"the declared body of {length} bytes exceeds {self._max_body} "
                    f"(HttpConfig.max_body_size)"))
            has_body = has_body or length > 0
        if has_body and parser.should_upgrade():
            self._raise(BadRequestError("an Upgrade or CONNECT request with a body is not "
                                        "supported"))
        return self._expect_continue and has_body and version == "1.1"

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._raise(PayloadTooLargeError(
                f"the request body exceeds {self._max_body} bytes "
                f"(HttpConfig.max_body_size)"))
        self._body_seen = True
        self._body_progress += 1
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        self._in_trailers = False
        self.their_phase = _IDLE
        self._completed += 1
        self._events.append(END_OF_MESSAGE)

    # -- events ------------------------------------------------------------------------

    def next_event(self) -> Event:
        """The next event, `NEED_DATA` or `PAUSED`; raises the queued `HttpError` in turn."""
        events = self._events
        if not events:
            while self._backlog and not events:
                self._parse_backlog()
            if not events:
                if self._error is not None:
                    raise self._error
                return NEED_DATA
        event = events[0]
        kind = type(event)
        if kind is Request:
            if self.our_state is not _OURS_IDLE:
                return PAUSED
            events.popleft()
            self.our_state = _OURS_RESPOND
            self._request = event  # type: ignore[assignment]
            self._current_open = True
            self._continue_sent = False
            self._close_after = False
            return event  # type: ignore[return-value]
        if kind is Data:
            events.popleft()
            return event  # type: ignore[return-value]
        if event is END_OF_MESSAGE:
            events.popleft()
            self._current_open = False
            return END_OF_MESSAGE
        if event is CONNECTION_CLOSED:
            if self.our_state is not _OURS_IDLE and self.our_state is not _OURS_MUST_CLOSE:
                return PAUSED
            events.popleft()
            return CONNECTION_CLOSED
        assert isinstance(event, HttpError)
        if not self._current_open and self.our_state is not _OURS_IDLE:
            return PAUSED  # the error belongs to the next request: answer this one first
        events.popleft()
        self._error = event
        raise event

    def next_complete_request(self) -> Request | None:
        """The next request when its whole message, with no body, is buffered and may be
        answered now (it is then handed out with its `END_OF_MESSAGE`, and `drained` says
        whether anything else is buffered: if not, the shell need not ask again); else
        None, and `next_event()` tells what there is. One call instead of three on the
        hot path."""
        events = self._events
        if len(events) < 2:
            if not self._backlog or self.our_state is not _OURS_IDLE:
                return None
            while len(events) < 2 and self._backlog:
                self._parse_backlog()
            if len(events) < 2:
                return None
        if self.our_state is not _OURS_IDLE or events[1] is not END_OF_MESSAGE:
            return None
        request = events[0]
        if type(request) is not Request:
            return None
        events.popleft()
        events.popleft()
        self.our_state = _OURS_RESPOND
        self._request = request
        self._current_open = self._continue_sent = self._close_after = False
        self.drained = not events and not self._backlog
        return request

    # -- output ------------------------------------------------------------------------

    def send_continue(self) -> bytes:
        """`100 Continue` if the current request asked for it and its body has not begun
        (else b""). The shell sends it when it is ready to read the body."""
        self._transition("continue")
        request = self._request
        if (request is None or not request.expect_continue or self._continue_sent
                or self._body_seen or not self._current_open):
            return b""
        self._continue_sent = True
        return _CONTINUE

    def _connection_line(self, request: Request, response: Response,
                         close: bool = False) -> bytes:
        """Decides keep-alive for this response: the Connection line that says so."""
        self._response = response
        if request.keep_alive and not response.close and not self._current_open and not close:
            self._close_after = False
            return _KEEP_ALIVE_END if request.http_version == "1.0" else b"\r\n"
        self._close_after = True
        return _CLOSE_END

    def respond(self, response: Response, now: float) -> bytes:
        """A whole response with a bytes body, as one bytes object (the fast path)."""
        if self.our_state is not _OURS_RESPOND:
            self._transition("done")  # raises: out of order
        body = response.body
        if type(body) is not bytes:
            raise HttpUsageError("a streamed body goes through start_response / send_body "
                                 "/ end_response")
        request = self._request
        assert request is not None
        # _connection_line, inlined: the hot path.
        self._response = response
        if request.keep_alive and not response.close and not self._current_open:
            self._close_after = False
            self.our_state = _OURS_IDLE
            end = _KEEP_ALIVE_END if request.http_version == "1.0" else b"\r\n"
        else:
            self._close_after = True
            self.our_state = _OURS_MUST_CLOSE
            end = _CLOSE_END
        # DateCache.line, inlined.
        cached = self._date._cached
        date = cached[2] if cached[0] <= now < cached[1] else self._date.line(now)
        if not body or request.method == "HEAD":
            return b"".join((response.encoded_head(self._server_name), date, end))
        # A reused response (the same object for every request) is joined once per Date
        # line and Connection ending; its head is encoded once per server name.
        wire = response._wire
        server_name = self._server_name
        if wire[1] is date and wire[2] is end and wire[0] == server_name:
            return wire[3]
        data = b"".join((response.encoded_head(server_name), date, end, body))
        response._wire = (server_name, date, end, data)
        return data

    def start_response(self, response: Response, now: float) -> bytes:
        """The head of a response whose body follows in `send_body` pieces."""
        self._transition("head")
        request = self._request
        assert request is not None
        status = response.status
        self._send_body = request.method != "HEAD" and status_allows_body(status)
        framing = b""
        self._chunked = close_delimited = False
        if response.content_length is None and status_allows_body(status):
            if request.http_version == "1.1":
                framing = _CHUNKED_LINE
                self._chunked = self._send_body
            else:
                close_delimited = True  # HTTP/1.0: the end of the body is our close
        end = self._connection_line(request, response, close_delimited)
        self._remaining = response.content_length if self._send_body else None
        return b"".join((response.encoded_head(self._server_name), framing,
                         self._date.line(now), end))

    def send_body(self, data: bytes | bytearray | memoryview) -> bytes:
        """One piece of the body, framed (b"" for HEAD, 204 and 304)."""
        self._transition("body")
        if not self._send_body or not data:
            return b""
        if self._chunked:
            return b"".join((b"%x\r\n" % len(data), data, b"\r\n"))
        remaining = self._remaining
        if remaining is not None:
            if len(data) > remaining:
                raise HttpUsageError(f"body piece of {len(data)} bytes exceeds the "
                                     f"{remaining} left of the response's Content-Length")
            self._remaining = remaining - len(data)
        return bytes(data)

    def end_response(self) -> bytes:
        """Ends the streamed response (the last chunk, for chunked framing)."""
        if self.our_state is _OURS_SEND_BODY and self._remaining:
            raise HttpUsageError(f"the response ended {self._remaining} bytes short of its "
                                 f"Content-Length: abort the connection instead")
        self._transition("done")
        tail = b"0\r\n\r\n" if self._chunked else b""
        self._finish()
        return tail

    def _finish(self) -> None:
        self._chunked = False
        self._remaining = None
        if self._close_after:
            self.our_state = _OURS_MUST_CLOSE

    def error_response(self, error: HttpError, now: float) -> bytes:
        """The response to `error` (its `status_hint`, a short text body,
        `Connection: close`). Afterwards the connection must close."""
        self._transition("error")
        text = f"{error.status_hint} {error.reason}: {error.message}\n".encode()
        request = self._request if self._current_open else None
        send_body = request is None or request.method != "HEAD"
        head = b"".join((
            status_line(error.status_hint, self._server_name), self._date.line(now),
            _CLOSE_LINE, b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n\r\n" % len(text)))
        return head + text if send_body else head

    def close(self) -> None:
        """Drop the parser (and the reference cycle it makes with this object)."""
        self._parser = None
        self._events.clear()
        self._backlog, self._backlog_at = b"", 0


def _map_parser_error(exc: httptools.HttpParserError) -> HttpError:
    reason = str(exc) or type(exc).__name__
    if any(marker in reason for marker in _SMUGGLING_REASONS):
        return RequestSmugglingError(f"ambiguous message framing: {reason}")
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return BadRequestError(f"not an HTTP request (invalid method): {reason}")
    return BadRequestError(f"malformed request: {reason}")
