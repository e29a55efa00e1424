"""Events `ServerConnection.next_event()` returns, besides `Request` (messages.py).

For every request: one `Request`, any number of `Data`, one `END_OF_MESSAGE`. Then, when
the client has closed its side at a message boundary, `CONNECTION_CLOSED`. `NEED_DATA`
says "feed me more bytes"; `PAUSED` says "answer the current request first" (pipelining:
responses go out in request order, so the next request waits for ours to end).
"""

from __future__ import annotations

from typing import Final


class Data:
    """A piece of the current request's body (chunked framing already removed)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


class EndOfMessageType(_Sentinel):
    """The current request is complete (trailers, if any, were checked and dropped)."""


class ConnectionClosedType(_Sentinel):
    """The client closed its side between two messages."""


class NeedDataType(_Sentinel):
    """No complete event is buffered: call `receive_data` with more bytes."""


class PausedType(_Sentinel):
    """The next request waits until the response to the current one has ended."""


END_OF_MESSAGE: Final = EndOfMessageType("END_OF_MESSAGE")
CONNECTION_CLOSED: Final = ConnectionClosedType("CONNECTION_CLOSED")
NEED_DATA: Final = NeedDataType("NEED_DATA")
PAUSED: Final = PausedType("PAUSED")
