"""The chat session: a sans-I/O state machine per connection, for either role.

Theory of operation
-------------------
`ChatSession(role)` is fed bytes (`receive_data`, `b""` = EOF) and hands out events
(`next_event()`): a `Message`, an `InvalidFrame` (a frame that broke the protocol: answer it
with `invalid.response()` and go on, the stream is still in sync), `NEED_DATA`, or `CLOSED`
(the stream ended or the peer said goodbye; nothing more will come). `send(message)` checks
that this role may send it now and returns the frame's bytes. No sockets, no clocks.

Every rule that affects the state is in the two tables below, keyed by (role, state):
`RECEIVES` (what may arrive and the state after it) and `SENDS` (what we may send and the
state after it). The states:

    GREETING --(server sends HELLO_OK / client receives HELLO_OK)--> READY
    client: GREETING or READY --(sends BYE)--> LEAVING --(BYE_OK)---> CLOSED
    server: any --(receives BYE)--> CLOSED (it still sends BYE_OK)
    any      --(CLOSING)---------------------------------------------> CLOSED

A server answers each event before asking for the next one, so a HELLO followed at once by
other requests works: the HELLO_OK it sends moves the session to READY before the next
request is looked at. A request that arrives too early is answered HELLO_REQUIRED; a second
HELLO, ALREADY_GREETED; a type the other role never sends, UNEXPECTED_TYPE.

The client adopts the max_frame announced in HELLO_OK (for what it receives and sends).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from muxio.handlers.chat.errors import ChatProtocolError, ChatUsageError, ErrorCode
from muxio.handlers.chat.framing import (
    CLOSED,
    DEFAULT_MAX_FRAME,
    ClosedType,
    Frame,
    FrameDecoder,
    NeedDataType,
)
from muxio.handlers.chat.messages import (
    Bye,
    ByeOk,
    Closing,
    ErrorResponse,
    GetList,
    GetName,
    GetTime,
    Hello,
    HelloOk,
    Incoming,
    Joined,
    Left,
    ListOk,
    Message,
    NameOk,
    Ping,
    Pong,
    Send,
    SendOk,
    TimeOk,
    decode,
    encode,
    type_name,
)


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class State(Enum):
    GREETING = "greeting"
    """Before the HELLO exchange: only HELLO, PING/PONG and BYE flow."""
    READY = "ready"
    """The client has an id: every request, response and indication flows."""
    LEAVING = "leaving"
    """The client sent BYE: answers to earlier requests still arrive, then BYE_OK."""
    CLOSED = "closed"
    """BYE (server side), BYE_OK or CLOSING went by: the session is over."""


@dataclass(frozen=True, slots=True)
class InvalidFrame:
    """A frame that broke the protocol. The stream is still in sync (the length prefix
    held), so a server answers `response()` and carries on."""

    code: int
    request_id: int
    request_type: int
    description: str

    @classmethod
    def from_error(cls, error: ChatProtocolError) -> InvalidFrame:
        return cls(int(error.code), error.request_id, error.request_type, error.description)

    def response(self) -> ErrorResponse:
        return ErrorResponse(request_id=self.request_id, code=self.code,
                             request_type=self.request_type, description=self.description)


Event = Message | InvalidFrame | NeedDataType | ClosedType
_Rules = dict[type[Message], State]

_G, _R, _L, _C = State.GREETING, State.READY, State.LEAVING, State.CLOSED
_SERVER_REQUESTS: _Rules = {GetTime: _R, GetName: _R, GetList: _R, Send: _R, Ping: _R, Pong: _R,
                            Bye: _C}
_SERVER_OUT_READY: _Rules = {TimeOk: _R, NameOk: _R, ListOk: _R, SendOk: _R, Pong: _R, Ping: _R,
                             ErrorResponse: _R, ByeOk: _C, Closing: _C, Incoming: _R,
                             Joined: _R, Left: _R}
_CLIENT_IN_READY: _Rules = {TimeOk: _R, NameOk: _R, ListOk: _R, SendOk: _R, Pong: _R, Ping: _R,
                            ErrorResponse: _R, ByeOk: _C, Closing: _C, Incoming: _R,
                            Joined: _R, Left: _R}
_CLIENT_IN_LEAVING: _Rules = {cls: _C if after is _C else _L
                              for cls, after in {**_CLIENT_IN_READY, HelloOk: _R}.items()}

RECEIVES: dict[tuple[Role, State], _Rules] = {
    (Role.SERVER, _G): {Hello: _G, Ping: _G, Pong: _G, Bye: _C},
    (Role.SERVER, _R): _SERVER_REQUESTS,
    (Role.SERVER, _L): {},
    (Role.SERVER, _C): {},
    (Role.CLIENT, _G): {HelloOk: _R, ErrorResponse: _G, Ping: _G, Pong: _G, ByeOk: _C,
                        Closing: _C},
    (Role.CLIENT, _R): _CLIENT_IN_READY,
    (Role.CLIENT, _L): _CLIENT_IN_LEAVING,
    (Role.CLIENT, _C): {},
}
"""(role, state) -> {message class that may arrive: state after it}."""

SENDS: dict[tuple[Role, State], _Rules] = {
    (Role.SERVER, _G): {HelloOk: _R, ErrorResponse: _G, Ping: _G, Pong: _G, ByeOk: _C,
                        Closing: _C},
    (Role.SERVER, _R): _SERVER_OUT_READY,
    (Role.SERVER, _L): {},
    (Role.SERVER, _C): {ByeOk: _C, Closing: _C},
    (Role.CLIENT, _G): {Hello: _G, Ping: _G, Pong: _G, Bye: _L},
    (Role.CLIENT, _R): {**_SERVER_REQUESTS, Hello: _R, Bye: _L},
    (Role.CLIENT, _L): {Pong: _L},
    (Role.CLIENT, _C): {},
}
"""(role, state) -> {message class we may send: state after it}. A client may send a
second HELLO (the server answers ALREADY_GREETED) only to test servers; nothing needs it."""


def _ever_received(role: Role) -> set[type[Message]]:
    return {cls for (rule_role, _), rules in RECEIVES.items() if rule_role is role
            for cls in rules}


_EVER_RECEIVED = {role: _ever_received(role) for role in Role}


class ChatSession:
    """One connection's protocol state, for `role`. See the module docstring."""

    __slots__ = ("role", "state", "_decoder", "_peer_max_frame", "_receives", "_sends")

    def __init__(self, role: Role, *, max_frame: int = DEFAULT_MAX_FRAME,
                 peer_max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.role = role
        self.state = State.GREETING
        self._decoder = FrameDecoder(max_frame)
        self._peer_max_frame = peer_max_frame
        self._receives = RECEIVES[(role, State.GREETING)]
        self._sends = SENDS[(role, State.GREETING)]

    @property
    def max_frame(self) -> int:
        """Largest length field accepted from the peer."""
        return self._decoder.max_frame

    @property
    def peer_max_frame(self) -> int:
        """Largest length field we may send."""
        return self._peer_max_frame

    @property
    def buffered(self) -> int:
        return self._decoder.buffered

    def _set_state(self, state: State) -> None:
        if state is not self.state:
            self.state = state
            self._receives = RECEIVES[(self.role, state)]
            self._sends = SENDS[(self.role, state)]

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer, in any split; `b""` means EOF."""
        if self.state is State.CLOSED:
            return  # the session is over: late bytes are dropped
        self._decoder.feed(data)

    def next_event(self) -> Event:
        if self.state is State.CLOSED:
            return CLOSED
        frame = self._decoder.next_frame()
        if not isinstance(frame, Frame):
            if isinstance(frame, ChatProtocolError):
                return InvalidFrame.from_error(frame)
            return frame  # NEED_DATA or CLOSED
        try:
            message = decode(frame.type_code, frame.request_id, frame.body)
        except ChatProtocolError as error:
            return InvalidFrame.from_error(error)
        cls = type(message)
        after = self._receives.get(cls)
        if after is None:
            return self._refuse(message)
        if after is not self.state:
            self._set_state(after)
        if isinstance(message, HelloOk):
            self._adopt(message)
        return message

    def _refuse(self, message: Message) -> InvalidFrame:
        cls = type(message)
        name = type_name(cls.TYPE)
        if cls is Hello and self.state is State.READY:
            code, text = ErrorCode.ALREADY_GREETED, "HELLO was already exchanged"
        elif self.state is State.GREETING and cls in RECEIVES[(self.role, State.READY)]:
            code, text = ErrorCode.HELLO_REQUIRED, f"{name} before the HELLO exchange"
        elif cls in _EVER_RECEIVED[self.role]:
            code, text = ErrorCode.UNEXPECTED_TYPE, f"{name} is not expected in state " \
                                                    f"{self.state.value}"
        else:
            peer = "client" if self.role is Role.SERVER else "server"
            code, text = ErrorCode.UNEXPECTED_TYPE, f"a {peer} does not send {name}"
        return InvalidFrame(code, message.request_id, cls.TYPE, text)

    def _adopt(self, hello: HelloOk) -> None:
        if self.role is Role.CLIENT:
            limit = max(1024, min(hello.max_frame, 16 * 1024 * 1024))
            self._decoder.max_frame = limit
            self._peer_max_frame = limit

    # -- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> bytes:
        """The frame for `message`; ChatUsageError if this role may not send it now or if
        it exceeds the peer's maximum frame size."""
        after = self._sends.get(type(message))
        if after is None:
            raise ChatUsageError(
                f"a {self.role.value} cannot send {type_name(message.TYPE)} in state "
                f"{self.state.value}"
                + (": wait for HELLO_OK" if self.state is State.GREETING else ""))
        frame = encode(message)
        if len(frame) - 4 > self._peer_max_frame:
            raise ChatUsageError(f"{type_name(message.TYPE)} frame of {len(frame) - 4} bytes "
                                 f"exceeds the peer's maximum of {self._peer_max_frame}")
        if after is not self.state:
            self._set_state(after)
        return frame

    def may_send(self, cls: type[Message]) -> bool:
        return cls in self._sends
