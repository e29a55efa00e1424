"""Chat errors: what the peer did wrong (with the wire error code to answer with), and what
the code driving the core did wrong.

`ChatProtocolError` and its subclasses describe a frame that broke the protocol; each carries
the `ErrorCode` a server answers with (h11's `error_status_hint`). The session turns them into
`InvalidFrame` events rather than raising, because the stream stays usable: the frame's
length prefix says where the next one starts. `ChatUsageError` is the other kind: local
code sent something out of order or out of range, a bug to fix, never a frame to send.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """The numeric codes of ERROR responses (docs/chat-protocol.md, "Errors")."""

    MALFORMED_FRAME = 1
    """The body does not match the frame's type (short, trailing bytes, bad UTF-8...)."""
    UNKNOWN_TYPE = 2
    """No message type has this code."""
    FRAME_TOO_LARGE = 3
    """The length prefix exceeds the receiver's maximum frame size; the body is skipped."""
    UNSUPPORTED_VERSION = 4
    """HELLO asked for a protocol version the server does not speak."""
    HELLO_REQUIRED = 5
    """A request other than HELLO, PING or BYE before the HELLO exchange."""
    ALREADY_GREETED = 6
    """A second HELLO on a connection."""
    SERVER_FULL = 7
    """The server has as many clients as it accepts; the connection is closed."""
    UNEXPECTED_TYPE = 8
    """A known type that this side never receives (e.g. a client sending an indication)."""
    NO_SUCH_CLIENT = 10
    """SEND to an id the server never gave out."""
    SEND_TO_SELF = 11
    """SEND to the sender's own id."""
    CLIENT_GONE = 12
    """SEND to a client that has left (ids are never reused)."""
    NOT_DELIVERED = 13
    """The recipient could not take the message (its output buffer is full: it is dropped)."""
    TEXT_TOO_LONG = 14
    """SEND text longer than the server forwards (max_frame - 128 bytes of UTF-8)."""


ERROR_NAMES: dict[int, str] = {code.value: code.name.lower().replace("_", " ")
                               for code in ErrorCode}
"""Human names of the codes, for logs and the CLI ('client gone')."""


class ChatError(Exception):
    """Base class of every error the chat package raises."""


class ChatProtocolError(ChatError):
    """A frame broke the protocol. `code` is the ERROR code to answer with."""

    code = ErrorCode.MALFORMED_FRAME

    def __init__(self, description: str, *, request_id: int = 0, request_type: int = 0) -> None:
        super().__init__(description)
        self.description = description
        self.request_id = request_id
        self.request_type = request_type


class MalformedFrameError(ChatProtocolError):
    """The body does not decode as the frame's type says."""

    code = ErrorCode.MALFORMED_FRAME


class UnknownTypeError(ChatProtocolError):
    """The type byte names no message."""

    code = ErrorCode.UNKNOWN_TYPE


class ChatUsageError(ChatError):
    """The local code misused the core: a message this role or state cannot send, a value
    that does not fit its field, a request before the connection is ready."""


class ChatRefusedError(ChatError, ConnectionError):
    """The server refused the HELLO (unsupported version, server full); see `code`."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"the server refused the connection: "
                         f"{ERROR_NAMES.get(code, str(code))} ({code}): {description}")
        self.code = code
        self.description = description


class ChatTimeoutError(ChatError, TimeoutError):
    """The peer stayed silent for `interval x misses` seconds (heartbeats unanswered)."""
