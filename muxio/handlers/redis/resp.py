"""RESP2, the Redis serialization protocol, as a sans-I/O codec: commands out, replies in.

Theory of operation
-------------------
A command is an array of bulk strings (`*3\\r\\n$3\\r\\nSET\\r\\n...`); `encode_command`
builds it. Replies are typed by their first byte: `+` simple string, `-` error, `:`
integer, `$` bulk string (`$-1` is nil), `*` array (`*-1` is nil), arrays nesting.

`RespParser` is a state machine fed bytes in any split (`feed`) and asked for whole
replies (`next_reply`, which returns `NEED_DATA` until one is complete). It never
re-parses: a line is read once, a bulk body is taken once all of it is there, and nested
arrays are a stack of partly filled lists. Every size a peer chooses is bounded before
anything is held for it: a header line (`max_line`), a bulk string (`max_bulk`), the
elements of one reply counted over all its arrays (`max_elements`), the nesting
(`max_depth`) and the bytes of one reply (`max_reply`). Anything malformed or over a bound
raises `RespProtocolError`; the connection is then unusable (a stream has no resync
point) and its owner closes it.

Values: simple and bulk strings are `bytes`, integers `int`, nil `None`, arrays `list`,
and an error reply is a `RedisError` *value* (the reply to one command, not a broken
stream), so that a pipeline of replies stays in step.
"""

from __future__ import annotations

from typing import Final, TypeAlias


class RespProtocolError(Exception):
    """The byte stream is not RESP2, or a reply passes a bound: close the connection."""


class RedisError(Exception):
    """An error reply (`-ERR ...`): the server refused one command. Its text as the
    server wrote it (its first word is the error kind: ERR, NOSCRIPT, WRONGTYPE...)."""

    @property
    def kind(self) -> str:
        return str(self).split(" ", 1)[0]


class NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()
"""`RespParser.next_reply` has no complete reply yet: feed more bytes."""

RespValue: TypeAlias = bytes | int | RedisError | list["RespValue"] | None
"""A decoded reply."""

CommandArg: TypeAlias = bytes | str | int


def encode_command(*args: CommandArg) -> bytes:
    """One command as RESP: an array of bulk strings (str as UTF-8, int as decimal)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if arg.__class__ is bytes:
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = bytes(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def encode_reply(value: RespValue) -> bytes:
    """A reply as a server writes it (for tests and fakes): bytes become bulk strings."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, RedisError):
        return b"-" + str(value).encode() + b"\r\n"
    if isinstance(value, bool):
        raise TypeError("RESP2 has no boolean")
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(encode_reply(item) for item in value)


class _Array:
    __slots__ = ("remaining", "items")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.items: list[RespValue] = []


class RespParser:
    """Replies from a byte stream, bounded (see the module docstring)."""

    def __init__(self, *, max_bulk: int = 16 * 1024 * 1024, max_elements: int = 1_000_000,
                 max_depth: int = 8, max_line: int = 64 * 1024,
                 max_reply: int = 64 * 1024 * 1024) -> None:
        self.max_bulk = max_bulk
        self.max_elements = max_elements
        self.max_depth = max_depth
        self.max_line = max_line
        self.max_reply = max_reply
        self._buffer = bytearray()
        self._pos = 0
        self._bulk = -1
        """Length of the bulk body being waited for, -1 when reading a line."""
        self._stack: list[_Array] = []
        self._elements = 0
        """Elements of the current reply so far."""
        self._reply_bytes = 0
        """Bytes of the current reply consumed so far."""
        self._broken: RespProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed by a complete reply or header."""
        return len(self._buffer) - self._pos

    def feed(self, data: bytes) -> None:
        """Bytes as they arrived, in any split."""
        if self._pos and self._pos >= len(self._buffer) // 2:
            del self._buffer[:self._pos]
            self._pos = 0
        self._buffer += data

    def next_reply(self) -> RespValue | NeedData:
        """The next complete reply, or NEED_DATA. Raises RespProtocolError (and keeps
        raising it) once the stream is broken."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._next()
        except RespProtocolError as exc:
            self._broken = exc
            raise

    def _take(self, count: int) -> None:
        self._pos += count
        self._reply_bytes += count
        if self._reply_bytes > self.max_reply:
            raise RespProtocolError(f"a reply is longer than {self.max_reply} bytes")

    def _next(self) -> RespValue | NeedData:
        buffer = self._buffer
        stack = self._stack
        while True:
            value: RespValue
            if self._bulk >= 0:
                size = self._bulk
                start = self._pos
                if len(buffer) - start < size + 2:
                    return NEED_DATA
                if buffer[start + size:start + size + 2] != b"\r\n":
                    raise RespProtocolError("a bulk string does not end with CRLF")
                value = bytes(buffer[start:start + size])
                self._take(size + 2)
                self._bulk = -1
            else:
                start = self._pos
                end = buffer.find(b"\r\n", start, start + self.max_line + 2)
                if end < 0:
                    if len(buffer) - start > self.max_line:
                        raise RespProtocolError(f"a reply line is longer than "
                                                f"{self.max_line} bytes")
                    return NEED_DATA
                line = bytes(buffer[start:end])
                self._take(end + 2 - start)
                if not line:
                    raise RespProtocolError("an empty reply line")
                kind, rest = line[:1], line[1:]
                if kind == b"+":
                    value = rest
                elif kind == b"-":
                    value = RedisError(rest.decode("utf-8", "replace"))
                elif kind == b":":
                    value = _integer(rest)
                elif kind == b"$":
                    size = _integer(rest)
                    if size == -1:
                        value = None
                    elif size < 0:
                        raise RespProtocolError(f"a bulk string of length {size}")
                    elif size > self.max_bulk:
                        raise RespProtocolError(f"a bulk string of {size} bytes; the limit "
                                                f"is {self.max_bulk}")
                    else:
                        self._bulk = size
                        continue
                elif kind == b"*":
                    count = _integer(rest)
                    if count == -1:
                        value = None
                    elif count < 0:
                        raise RespProtocolError(f"an array of length {count}")
                    else:
                        self._elements += count
                        if self._elements > self.max_elements:
                            raise RespProtocolError(f"a reply with more than "
                                                    f"{self.max_elements} elements")
                        if count:
                            if len(stack) >= self.max_depth:
                                raise RespProtocolError(f"arrays nested deeper than "
                                                        f"{self.max_depth}")
                            stack.append(_Array(count))
                            continue
                        value = []
                else:
                    raise RespProtocolError(f"unknown reply type {kind!r}")
            # A value is complete: it fills its array, which may complete its parent...
            while stack:
                top = stack[-1]
                top.items.append(value)
                top.remaining -= 1
                if top.remaining:
                    break
                value = top.items
                stack.pop()
            else:
                self._elements = 0
                self._reply_bytes = 0
                return value


def _integer(text: bytes) -> int:
    if not text or len(text) > 20 or not text.lstrip(b"-").isdigit() or text.count(b"-") > 1:
        raise RespProtocolError(f"not an integer: {text[:32]!r}")
    return int(text)
