"""What an application sees: a `Request` in, a `Response` out.

A `Request` is also the core's first event for a message (its `body` is filled in by the
shell once the message is complete). A `Response` is an immutable value: build it once and
reuse it (the hello endpoint answers every request with the same object, and its encoded
header block is cached on first use).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any

_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "date",
                              "server"})
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NO_BODY_STATUSES = frozenset({204, 304})

Body = bytes | Iterable[bytes]
"""A response body: bytes, or an iterable of byte chunks sent with flow control (its
`close()`, if any, is called when the response ends or the connection is lost)."""


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def status_allows_body(status: int) -> bool:
    """False for 1xx, 204 and 304: such responses never carry a body or a length."""
    return status >= 200 and status not in _NO_BODY_STATUSES


class Headers:
    """Request header fields with case-insensitive lookup by name (str, latin-1)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name`, or `default`."""
        wanted = name.lower().encode("latin-1")
        for key, value in self._raw:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower().encode("latin-1")
        return [value.decode("latin-1") for key, value in self._raw if key.lower() == wanted]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for key, value in self._raw:
            yield key.decode("latin-1"), value.decode("latin-1")

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


class Request:
    """One request: method, target, version, header fields, then its body.

    `path` and `query` are the target's parts as sent (still percent-encoded, decoded as
    latin-1); an absolute-form target (`GET http://host/x`) is reduced to its path.
    """

    __slots__ = ("method", "target", "path", "query", "http_version", "raw_headers",
                 "keep_alive", "expect_continue", "body", "peer", "_headers")

    def __init__(self, method: str, target: bytes, http_version: str,
                 raw_headers: list[tuple[bytes, bytes]], keep_alive: bool, *,
                 expect_continue: bool = False) -> None:
        self.method = method
        self.target = target
        if target == b"/":  # the hot path: the root, a constant
            self.path = "/"
            self.query = ""
        elif b"?" in target or not target.startswith(b"/"):
            path, question, query = target.partition(b"?")
            if not path.startswith(b"/"):
                path = _origin_path(path)
            self.path = path.decode("latin-1")
            self.query = query.partition(b"#")[0].decode("latin-1") if question else ""
        else:  # the common case: an origin-form path with no query
            self.path = target.decode("latin-1")
            self.query = ""
        self.http_version = http_version
        self.raw_headers = raw_headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body = b""
        self.peer: Any = None
        self._headers: Headers | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self.raw_headers)
        return self._headers

    def __repr__(self) -> str:
        return (f"<Request {self.method} {self.target.decode('latin-1')} "
                f"HTTP/{self.http_version} {len(self.raw_headers)} headers "
                f"{len(self.body)} body bytes>")


def _origin_path(path: bytes) -> bytes:
    """Path of an absolute-form (`http://host/p`) or asterisk-form (`*`) target."""
    if path == b"*":
        return path
    _scheme, sep, rest = path.partition(b"://")
    if not sep:
        return path  # authority-form (CONNECT host:port): routed as is, and refused
    slash = rest.find(b"/")
    return rest[slash:] if slash >= 0 else b"/"


class Response:
    """Status, header fields and body. Immutable once built; reuse it freely.

    `body` is bytes, or an iterable of byte chunks streamed with flow control. A streamed
    body without `content_length` is sent chunked (HTTP/1.1) or close-delimited (1.0).
    Framing headers (Content-Length, Transfer-Encoding, Connection, Date, Server) are the
    server's: pass `content_length` / `close=True` instead.
    """

    __slots__ = ("status", "headers", "body", "content_length", "close", "_head", "_wire")

    def __init__(self, status: int = 200, headers: Iterable[tuple[str, str]] = (),
                 body: Body = b"", *, content_length: int | None = None,
                 close: bool = False) -> None:
        if not 100 <= status <= 999:
            raise ValueError(f"HTTP status must be 100-999, got {status}")
        self.status = status
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        for name, value in self.headers:
            _check_header(name, value)
        if isinstance(body, bytes | bytearray | memoryview):
            body = bytes(body)
            if content_length is not None and content_length != len(body):
                raise ValueError(f"content_length={content_length} but the body has "
                                 f"{len(body)} bytes; leave content_length out for bytes")
            content_length = len(body)
            if body and not status_allows_body(status):
                raise ValueError(f"a {status} response cannot have a body")
        elif content_length is not None and content_length < 0:
            raise ValueError(f"content_length must be >= 0, got {content_length}")
        self.body: Body = body
        self.content_length = content_length
        self.close = close
        self._head: tuple[str, bytes] = ("", b"")
        self._wire: tuple[str, bytes, bytes, bytes] = ("", b"", b"", b"")
        """The core's cache of this response's last wire form: (server name, Date line,
        end of head, bytes). A reused response (the hello endpoint) is joined once per
        second. One tuple, replaced whole: loops in other threads may share the object."""

    @classmethod
    def text(cls, text: str, status: int = 200, *, headers: Iterable[tuple[str, str]] = (),
             close: bool = False) -> Response:
        """A text/plain UTF-8 response."""
        return cls(status, (("Content-Type", "text/plain; charset=utf-8"), *headers),
                   text.encode(), close=close)

    def encoded_head(self, server_name: str) -> bytes:
        """Status line, Server, the header fields and Content-Length (when known), without
        Date, Connection and the final CRLF; encoded once per Response (and server)."""
        cached = self._head
        if cached[0] == server_name:
            return cached[1]
        lines = [f"HTTP/1.1 {self.status} {reason_phrase(self.status)}\r\n",
                 f"Server: {server_name}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        if self.content_length is not None and status_allows_body(self.status):
            lines.append(f"Content-Length: {self.content_length}\r\n")
        head = "".join(lines).encode("latin-1")
        self._head = (server_name, head)
        return head

    def __repr__(self) -> str:
        kind = "bytes" if isinstance(self.body, bytes) else "stream"
        return f"<Response {self.status} {kind} length={self.content_length}>"


def _check_header(name: str, value: str) -> None:
    if not name or not set(name.encode("latin-1", "replace")) <= _TOKEN_CHARS:
        raise ValueError(f"invalid header name {name!r}: use token characters only")
    if name.lower() in _FRAMING_HEADERS:
        raise ValueError(f"header {name!r} is set by the server; use content_length= or "
                         f"close= instead")
    if any(char in value for char in "\r\n\0"):
        raise ValueError(f"header {name!r} value contains CR, LF or NUL: {value!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"header {name!r} value is not latin-1: {value!r}") from None
