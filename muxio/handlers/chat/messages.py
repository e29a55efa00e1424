"""The chat messages: one frozen dataclass per type, each with its body codec.

This module is the executable form of docs/chat-protocol.md. A frame on the wire is

    length:u32  type:u8  request_id:u32  body[length - 5]

(big-endian; `length` counts the bytes after itself). The type's top two bits give its
class: 00 request (client -> server), 01 response (the request's type | 0x40, or ERROR),
10 indication (server-initiated, request_id 0), 11 reserved. PING/PONG are the one pair
either side may send (heartbeats).

Field types: u8/u16/u32 unsigned, i64 signed, `string` = u16 byte count + UTF-8 (strict:
invalid UTF-8 is a malformed frame). A body must be consumed exactly: trailing bytes are
malformed too, so a decoding mistake never goes unnoticed.

`encode(message)` gives a whole frame; `decode(type, request_id, body)` gives the message
or raises `ChatProtocolError` (with the code to answer). The frame size limits and the
state rules live in framing.py and session.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from muxio.handlers.chat.errors import (
    ChatUsageError,
    ErrorCode,
    MalformedFrameError,
    UnknownTypeError,
)

PROTOCOL_VERSION = 1
"""The version this implementation speaks (HELLO / HELLO_OK)."""
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

HEADER = struct.Struct(">IBI")
"""length, type, request_id: the 9 bytes in front of every body."""
HEADER_SIZE = HEADER.size
LENGTH_SIZE = 4
MIN_LENGTH = HEADER_SIZE - LENGTH_SIZE
"""The smallest valid length field: type and request id, empty body."""
MAX_STRING = 0xFFFF
MAX_ADDRESS = 64
"""Bytes of an address string the server sends (longer ones are cut: never for IP text)."""
MESSAGE_OVERHEAD = 128
"""A MESSAGE indication is at most this much larger than its text, so a text of
max_frame - MESSAGE_OVERHEAD bytes always fits in one frame to the recipient."""

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_HELLO_OK = struct.Struct(">HI")
_LIMITS = struct.Struct(">HII")
_LIST_HEAD = struct.Struct(">BH")
_SEND_TO = _U32
_ERROR_HEAD = struct.Struct(">HB")
_LEFT = struct.Struct(">IB")


class MessageType(IntEnum):
    """Type codes. Requests 0x01-0x3F, responses 0x40-0x7F, indications 0x80-0xBF."""

    HELLO = 0x01
    TIME = 0x02
    NAME = 0x03
    LIST = 0x04
    SEND = 0x05
    PING = 0x06
    BYE = 0x07
    HELLO_OK = 0x41
    TIME_OK = 0x42
    NAME_OK = 0x43
    LIST_OK = 0x44
    SEND_OK = 0x45
    PONG = 0x46
    BYE_OK = 0x47
    ERROR = 0x7F
    MESSAGE = 0x81
    JOINED = 0x82
    LEFT = 0x83
    CLOSING = 0x84


class MessageClass(IntEnum):
    """The top two bits of a type code."""

    REQUEST = 0
    RESPONSE = 1
    INDICATION = 2
    RESERVED = 3


def message_class(type_code: int) -> MessageClass:
    return MessageClass((type_code >> 6) & 3)


class LeaveReason(IntEnum):
    """Why a client left the list (LEFT indication)."""

    BYE = 0
    """It said BYE."""
    CLOSED = 1
    """Its connection closed or broke."""
    TIMEOUT = 2
    """It stopped answering heartbeats (a dead peer: unplugged cable, frozen host)."""
    SLOW_RECEIVER = 3
    """It did not read fast enough: its output buffer passed the server's limit."""
    PROTOCOL_ERRORS = 4
    """It sent too many invalid frames in a row."""


# -- body reading ------------------------------------------------------------------------


class BodyReader:
    """Reads fields from a body; every shortfall is a `MalformedFrameError`."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, size: int, what: str) -> int:
        pos = self._pos
        if pos + size > len(self._data):
            raise MalformedFrameError(f"body too short: {what} needs {size} bytes, "
                                      f"{len(self._data) - pos} left")
        self._pos = pos + size
        return pos

    def unpack(self, layout: struct.Struct, what: str) -> tuple[int, ...]:
        return layout.unpack_from(self._data, self._take(layout.size, what))

    def u8(self, what: str) -> int:
        return int(self._data[self._take(1, what)])

    def u16(self, what: str) -> int:
        return int(_U16.unpack_from(self._data, self._take(2, what))[0])

    def u32(self, what: str) -> int:
        return int(_U32.unpack_from(self._data, self._take(4, what))[0])

    def i64(self, what: str) -> int:
        return int(_I64.unpack_from(self._data, self._take(8, what))[0])

    def string(self, what: str) -> str:
        size = self.u16(f"the length of {what}")
        start = self._take(size, what)
        try:
            return self._data[start:start + size].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedFrameError(f"{what} is not valid UTF-8 ({exc.reason} at byte "
                                      f"{exc.start})") from None

    def end(self) -> None:
        extra = len(self._data) - self._pos
        if extra:
            raise MalformedFrameError(f"{extra} unexpected bytes after the body")


def encode_string(value: str, what: str) -> bytes:
    """u16 length + UTF-8; a ChatUsageError if it does not fit."""
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ChatUsageError(f"{what} cannot be encoded as UTF-8: {exc.reason}") from None
    if len(raw) > MAX_STRING:
        raise ChatUsageError(f"{what} is {len(raw)} bytes of UTF-8; a string field holds at "
                             f"most {MAX_STRING}")
    return _U16.pack(len(raw)) + raw


def truncate_utf8(value: str, limit: int) -> str:
    """`value` cut to at most `limit` bytes of UTF-8, never inside a character."""
    raw = value.encode("utf-8", "replace")
    if len(raw) <= limit:
        return value
    return raw[:limit].decode("utf-8", "ignore")


# -- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message. `request_id` pairs a response with its request (0 in
    indications); requesters choose it (clients start at 1)."""

    TYPE: ClassVar[MessageType]
    request_id: int = 0

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> Message:
        body.end()
        return cls(request_id=request_id)


# requests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """First request: the protocol version the client speaks."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    version: int = PROTOCOL_VERSION

    def encode_body(self) -> bytes:
        return _U16.pack(self.version)

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> Hello:
        version = body.u16("version")
        body.end()
        return cls(request_id=request_id, version=version)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetTime(Message):
    """Ask for the server's clock."""

    TYPE: ClassVar[MessageType] = MessageType.TIME


@dataclass(frozen=True, slots=True, kw_only=True)
class GetName(Message):
    """Ask for the server's host name."""

    TYPE: ClassVar[MessageType] = MessageType.NAME


@dataclass(frozen=True, slots=True, kw_only=True)
class GetList(Message):
    """Ask for the connected clients."""

    TYPE: ClassVar[MessageType] = MessageType.LIST


@dataclass(frozen=True, slots=True, kw_only=True)
class Send(Message):
    """Forward `text` to client `to`."""

    TYPE: ClassVar[MessageType] = MessageType.SEND
    to: int
    text: str

    def encode_body(self) -> bytes:
        return _SEND_TO.pack(self.to) + encode_string(self.text, "SEND text")

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> Send:
        to = body.u32("recipient id")
        text = body.string("text")
        body.end()
        return cls(request_id=request_id, to=to, text=text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    """Heartbeat; either side may send it, the other answers PONG with the same id."""

    TYPE: ClassVar[MessageType] = MessageType.PING


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(Message):
    """The client is leaving; the server answers BYE_OK and closes."""

    TYPE: ClassVar[MessageType] = MessageType.BYE


# responses ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloOk(Message):
    """The server accepts: the version in use, the client's id and address as the server
    sees it, the server's maximum frame size and heartbeat interval (0 = none)."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO_OK
    version: int
    client_id: int
    address: str
    port: int
    max_frame: int
    heartbeat_ms: int

    def encode_body(self) -> bytes:
        return b"".join((_HELLO_OK.pack(self.version, self.client_id),
                         encode_string(self.address, "address"),
                         _LIMITS.pack(self.port, self.max_frame, self.heartbeat_ms)))

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> HelloOk:
        version, client_id = body.unpack(_HELLO_OK, "version and client id")
        address = body.string("address")
        port, max_frame, heartbeat_ms = body.unpack(_LIMITS, "port and limits")
        body.end()
        return cls(request_id=request_id, version=version, client_id=client_id,
                   address=address, port=port, max_frame=max_frame, heartbeat_ms=heartbeat_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeOk(Message):
    """The server's clock: milliseconds since the Unix epoch, and as ISO 8601 text in the
    server's local time with its UTC offset."""

    TYPE: ClassVar[MessageType] = MessageType.TIME_OK
    unix_ms: int
    text: str

    def encode_body(self) -> bytes:
        return _I64.pack(self.unix_ms) + encode_string(self.text, "time text")

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> TimeOk:
        unix_ms = body.i64("unix_ms")
        text = body.string("time text")
        body.end()
        return cls(request_id=request_id, unix_ms=unix_ms, text=text)


@dataclass(frozen=True, slots=True, kw_only=True)
class NameOk(Message):
    """The server's host name."""

    TYPE: ClassVar[MessageType] = MessageType.NAME_OK
    name: str

    def encode_body(self) -> bytes:
        return encode_string(self.name, "host name")

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> NameOk:
        name = body.string("host name")
        body.end()
        return cls(request_id=request_id, name=name)


@dataclass(frozen=True, slots=True)
class ClientEntry:
    """One connected client as the server sees it."""

    client_id: int
    address: str
    port: int

    def encode(self) -> bytes:
        return (_U32.pack(self.client_id) + encode_string(self.address, "address")
                + _U16.pack(self.port))

    @classmethod
    def decode(cls, body: BodyReader) -> ClientEntry:
        client_id = body.u32("client id")
        address = body.string("address")
        port = body.u16("port")
        return cls(client_id, address, port)


LIST_MORE = 0x01
"""LIST_OK flag: more LIST_OK frames follow for the same request."""
LIST_HEAD_SIZE = HEADER_SIZE + _LIST_HEAD.size


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOk(Message):
    """Connected clients. A long list spans several LIST_OK frames with the same request
    id; all but the last have `more` set. (`ChatClientProtocol` joins them.)"""

    TYPE: ClassVar[MessageType] = MessageType.LIST_OK
    clients: tuple[ClientEntry, ...]
    more: bool = False

    def encode_body(self) -> bytes:
        if len(self.clients) > 0xFFFF:
            raise ChatUsageError(f"a LIST_OK frame holds at most 65535 entries, not "
                                 f"{len(self.clients)}: split the list")
        return _LIST_HEAD.pack(LIST_MORE if self.more else 0, len(self.clients)) + b"".join(
            entry.encode() for entry in self.clients)

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> ListOk:
        flags, count = body.unpack(_LIST_HEAD, "flags and count")
        if flags & ~LIST_MORE:
            raise MalformedFrameError(f"unknown LIST_OK flags {flags:#04x}")
        clients = tuple(ClientEntry.decode(body) for _ in range(count))
        body.end()
        return cls(request_id=request_id, clients=clients, more=bool(flags & LIST_MORE))


@dataclass(frozen=True, slots=True, kw_only=True)
class SendOk(Message):
    """The message was delivered: written to client `to`'s connection."""

    TYPE: ClassVar[MessageType] = MessageType.SEND_OK
    to: int

    def encode_body(self) -> bytes:
        return _U32.pack(self.to)

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> SendOk:
        to = body.u32("recipient id")
        body.end()
        return cls(request_id=request_id, to=to)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    """Answer to PING (same request id)."""

    TYPE: ClassVar[MessageType] = MessageType.PONG


@dataclass(frozen=True, slots=True, kw_only=True)
class ByeOk(Message):
    """Answer to BYE; the server closes the connection after it."""

    TYPE: ClassVar[MessageType] = MessageType.BYE_OK


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResponse(Message):
    """A request failed: `code` (ErrorCode), the type of the request it answers (0 when
    the frame was too broken to tell), and a description for humans."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR
    code: int
    request_type: int = 0
    description: str = ""

    def encode_body(self) -> bytes:
        return _ERROR_HEAD.pack(self.code, self.request_type) + encode_string(
            truncate_utf8(self.description, 1024), "error description")

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> ErrorResponse:
        code, request_type = body.unpack(_ERROR_HEAD, "code and request type")
        description = body.string("error description")
        body.end()
        return cls(request_id=request_id, code=code, request_type=request_type,
                   description=description)


# indications ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming(Message):
    """A forwarded message (type MESSAGE): who sent it, from where, and the text."""

    TYPE: ClassVar[MessageType] = MessageType.MESSAGE
    sender: int
    address: str
    port: int
    text: str

    def encode_body(self) -> bytes:
        return b"".join((_U32.pack(self.sender), encode_string(self.address, "address"),
                         _U16.pack(self.port), encode_string(self.text, "message text")))

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> Incoming:
        sender = body.u32("sender id")
        address = body.string("address")
        port = body.u16("port")
        text = body.string("message text")
        body.end()
        return cls(request_id=request_id, sender=sender, address=address, port=port,
                   text=text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Joined(Message):
    """Another client completed its HELLO."""

    TYPE: ClassVar[MessageType] = MessageType.JOINED
    client: ClientEntry

    def encode_body(self) -> bytes:
        return self.client.encode()

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> Joined:
        client = ClientEntry.decode(body)
        body.end()
        return cls(request_id=request_id, client=client)


@dataclass(frozen=True, slots=True, kw_only=True)
class Left(Message):
    """A client left the list, and why (`LeaveReason`)."""

    TYPE: ClassVar[MessageType] = MessageType.LEFT
    client_id: int
    reason: int

    def encode_body(self) -> bytes:
        return _LEFT.pack(self.client_id, self.reason)

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> Left:
        client_id, reason = body.unpack(_LEFT, "client id and reason")
        body.end()
        return cls(request_id=request_id, client_id=client_id, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class Closing(Message):
    """The server is about to close this connection (shutdown...), and why."""

    TYPE: ClassVar[MessageType] = MessageType.CLOSING
    reason: str

    def encode_body(self) -> bytes:
        return encode_string(truncate_utf8(self.reason, 1024), "closing reason")

    @classmethod
    def decode_body(cls, request_id: int, body: BodyReader) -> Closing:
        reason = body.string("closing reason")
        body.end()
        return cls(request_id=request_id, reason=reason)


MESSAGE_TYPES: dict[int, type[Message]] = {cls.TYPE.value: cls for cls in (
    Hello, GetTime, GetName, GetList, Send, Ping, Bye,
    HelloOk, TimeOk, NameOk, ListOk, SendOk, Pong, ByeOk, ErrorResponse,
    Incoming, Joined, Left, Closing)}
"""Type code -> message class: the one table both encoding and decoding use."""

REQUESTS: frozenset[type[Message]] = frozenset(
    cls for cls in MESSAGE_TYPES.values() if message_class(cls.TYPE) is MessageClass.REQUEST)
RESPONSES: frozenset[type[Message]] = frozenset(
    cls for cls in MESSAGE_TYPES.values() if message_class(cls.TYPE) is MessageClass.RESPONSE)
INDICATIONS: frozenset[type[Message]] = frozenset(
    cls for cls in MESSAGE_TYPES.values()
    if message_class(cls.TYPE) is MessageClass.INDICATION)


def encode(message: Message) -> bytes:
    """The whole frame for `message`: length prefix, type, request id, body."""
    try:
        body = message.encode_body()
        return HEADER.pack(MIN_LENGTH + len(body), message.TYPE, message.request_id) + body
    except struct.error as exc:
        raise ChatUsageError(f"{type(message).__name__}: a field is out of range for its "
                             f"wire type ({exc}): {message!r}") from None


def decode(type_code: int, request_id: int, body: bytes) -> Message:
    """The message a frame carries; `ChatProtocolError` (with the request id and type
    filled in) if its type is unknown or its body does not match."""
    cls = MESSAGE_TYPES.get(type_code)
    try:
        if cls is None:
            raise UnknownTypeError(f"unknown message type {type_code:#04x}")
        return cls.decode_body(request_id, BodyReader(body))
    except (MalformedFrameError, UnknownTypeError) as exc:
        exc.request_id = request_id
        exc.request_type = type_code
        raise


def type_name(type_code: int) -> str:
    """'TIME', 'LIST_OK', or '0x3c' for codes no message has."""
    try:
        return MessageType(type_code).name
    except ValueError:
        return f"{type_code:#04x}"


__all__ = [
    "HEADER", "HEADER_SIZE", "INDICATIONS", "LENGTH_SIZE", "LIST_HEAD_SIZE", "LIST_MORE",
    "MAX_ADDRESS", "MAX_STRING", "MESSAGE_OVERHEAD", "MESSAGE_TYPES", "MIN_LENGTH",
    "PROTOCOL_VERSION", "REQUESTS", "RESPONSES", "SUPPORTED_VERSIONS", "BodyReader", "Bye",
    "ByeOk", "ClientEntry", "Closing", "ErrorCode", "ErrorResponse", "GetList", "GetName",
    "GetTime", "Hello", "HelloOk", "Incoming", "Joined", "LeaveReason", "Left", "ListOk",
    "Message", "MessageClass", "MessageType", "NameOk", "Ping", "Pong", "Send", "SendOk",
    "TimeOk", "decode", "encode", "encode_string", "message_class", "truncate_utf8",
    "type_name",
]
