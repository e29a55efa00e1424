"""Frame boundaries: a length-prefixed stream cut into frames, whatever the reads' sizes.

Theory of operation
-------------------
Bytes are appended to one buffer; `next_frame()` looks at the 4-byte length at the read
offset and returns a frame once all of it is there. The consumed prefix is deleted only when
the decoder runs dry (NEED_DATA), so a read holding thousands of small frames costs one
`del`, not one per frame.

Every broken frame becomes a `ChatProtocolError` *returned* (not raised), because the length
prefix still says where the next frame starts and the stream stays usable:

- length < 5 (no room for type and request id): the frame's bytes are consumed, code
  MALFORMED_FRAME;
- length > max_frame: as soon as its type and request id are in (so the error can name
  them), code FRAME_TOO_LARGE, and the rest of the body is *skipped* as it arrives, never
  buffered: memory stays bounded by max_frame whatever the peer declares.

EOF (`feed(b"")`) inside a frame is reported once as MALFORMED_FRAME, then `CLOSED`.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from muxio.handlers.chat.errors import ChatProtocolError, ErrorCode
from muxio.handlers.chat.messages import HEADER, HEADER_SIZE, LENGTH_SIZE, MIN_LENGTH

DEFAULT_MAX_FRAME = 64 * 1024
"""Largest length field accepted unless configured otherwise (and announced in HELLO_OK)."""
MIN_MAX_FRAME = 1024
MAX_MAX_FRAME = 16 * 1024 * 1024


class Frame(NamedTuple):
    """One complete frame: type code, request id and body bytes."""

    type_code: int
    request_id: int
    body: bytes


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


class NeedDataType(_Sentinel):
    """No complete frame (or event) is buffered: feed more bytes."""


class ClosedType(_Sentinel):
    """The stream ended (EOF, or the session is closed): nothing more will come."""


NEED_DATA: Final = NeedDataType("NEED_DATA")
CLOSED: Final = ClosedType("CLOSED")


class FrameTooLargeError(ChatProtocolError):
    """The length prefix exceeds the receiver's maximum; the body is skipped unread."""

    code = ErrorCode.FRAME_TOO_LARGE


def check_max_frame(max_frame: int, what: str = "max_frame") -> int:
    if not MIN_MAX_FRAME <= max_frame <= MAX_MAX_FRAME:
        raise ValueError(f"{what} must be between {MIN_MAX_FRAME} and {MAX_MAX_FRAME} bytes, "
                         f"got {max_frame}")
    return max_frame


class FrameDecoder:
    """Bytes in (any split), frames out. `max_frame` bounds the length field."""

    __slots__ = ("_buffer", "_offset", "_skip", "_eof", "_eof_reported", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = check_max_frame(max_frame)
        self._buffer = bytearray()
        self._offset = 0
        self._skip = 0
        self._eof = False
        self._eof_reported = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buffer) - self._offset

    @property
    def eof(self) -> bool:
        return self._eof

    def feed(self, data: bytes) -> None:
        """Append received bytes; `b""` means the peer closed its side (EOF)."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise ValueError("bytes fed after EOF")
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            if skipped == len(data):
                return
            data = data[skipped:]
        self._buffer += data

    def next_frame(self) -> Frame | ChatProtocolError | NeedDataType | ClosedType:
        buffer = self._buffer
        offset = self._offset
        available = len(buffer) - offset
        if available >= HEADER_SIZE:
            length, type_code, request_id = HEADER.unpack_from(buffer, offset)
            end = offset + LENGTH_SIZE + length
            if MIN_LENGTH <= length <= self.max_frame and end <= len(buffer):
                self._offset = end
                return Frame(type_code, request_id, bytes(buffer[offset + HEADER_SIZE:end]))
        return self._next_slow()

    def _next_slow(self) -> Frame | ChatProtocolError | NeedDataType | ClosedType:
        buffer = self._buffer
        offset = self._offset
        available = len(buffer) - offset
        if available >= LENGTH_SIZE:
            length = int.from_bytes(buffer[offset:offset + LENGTH_SIZE], "big")
            if length < MIN_LENGTH:
                if available >= LENGTH_SIZE + length:
                    self._offset = offset + LENGTH_SIZE + length
                    type_code = buffer[offset + LENGTH_SIZE] if length else 0
                    return ChatProtocolError(
                        f"frame length {length} is too short for a type and a request id "
                        f"(at least {MIN_LENGTH})", request_type=type_code)
            elif length > self.max_frame and available >= HEADER_SIZE:
                _, type_code, request_id = HEADER.unpack_from(buffer, offset)
                body = length - MIN_LENGTH
                in_buffer = min(body, available - HEADER_SIZE)
                self._offset = offset + HEADER_SIZE + in_buffer
                self._skip = body - in_buffer
                return FrameTooLargeError(
                    f"frame of {length} bytes exceeds the maximum of {self.max_frame}; "
                    f"its body is skipped", request_id=request_id, request_type=type_code)
        # Nothing complete: compact, then report EOF or ask for more.
        if offset:
            del buffer[:offset]
            self._offset = 0
        if self._eof:
            if buffer and not self._eof_reported:
                self._eof_reported = True
                left = len(buffer)
                buffer.clear()
                return ChatProtocolError(f"the stream ended inside a frame ({left} bytes of "
                                         f"it received)")
            if self._skip and not self._eof_reported:
                self._eof_reported = True
                return ChatProtocolError(f"the stream ended inside a skipped frame "
                                         f"({self._skip} bytes of it missing)")
            return CLOSED
        return NEED_DATA
