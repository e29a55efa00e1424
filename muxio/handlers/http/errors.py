"""HTTP errors: each names what went wrong and carries the status a server answers with.

`HttpError` and its subclasses are raised by the sans-I/O core (`ServerConnection`) when the
peer breaks the protocol or a configured limit; `status_hint` is the response status
(`error_status_hint` in h11's words), and every one of them ends the connection after that
response. `HttpUsageError` is the other kind: the code driving the core (a shell or an app)
did something out of order, which is a bug to fix rather than a response to send.
"""

from __future__ import annotations


class HttpError(Exception):
    """The peer broke HTTP/1.1 or a limit; answer with `status_hint`, then close."""

    status_hint = 400
    reason = "Bad Request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(HttpError):
    """Malformed request line, header or chunk framing (400)."""


class IncompleteRequestError(BadRequestError):
    """The peer closed its side in the middle of a request (400)."""


class RequestSmugglingError(BadRequestError):
    """Ambiguous message framing: Content-Length with Transfer-Encoding, duplicate or
    conflicting lengths (400). Such a request is never forwarded or answered normally."""


class MissingHostError(BadRequestError):
    """An HTTP/1.1 request without exactly one Host header (400, RFC 9112 section 3.2)."""


class RequestTimeoutError(HttpError):
    """The request head (or body) did not arrive within the configured timeout (408)."""

    status_hint = 408
    reason = "Request Timeout"


class ExpectationFailedError(HttpError):
    """An Expect header other than `100-continue` (417)."""

    status_hint = 417
    reason = "Expectation Failed"


class PayloadTooLargeError(HttpError):
    """The request body exceeds `HttpConfig.max_body_size` (413)."""

    status_hint = 413
    reason = "Content Too Large"


class UriTooLongError(HttpError):
    """The request target exceeds `HttpConfig.max_target_size` (414)."""

    status_hint = 414
    reason = "URI Too Long"


class HeaderFieldsTooLargeError(HttpError):
    """The header section exceeds `HttpConfig.max_head_size` or `max_headers` (431)."""

    status_hint = 431
    reason = "Request Header Fields Too Large"


class NotImplementedTransferCodingError(HttpError):
    """A Transfer-Encoding other than plain `chunked` (501, RFC 9112 section 6.1)."""

    status_hint = 501
    reason = "Not Implemented"


class HttpVersionNotSupportedError(HttpError):
    """A request for a major HTTP version other than 1 (505)."""

    status_hint = 505
    reason = "HTTP Version Not Supported"


class HttpUsageError(RuntimeError):
    """The code driving `ServerConnection` called it out of order (e.g. two responses to
    one request, a body longer than its Content-Length). Fix the calling code."""
