"""Chat-forward: a small message-switching protocol (docs/chat-protocol.md).

- messages.py, framing.py, session.py: the sans-I/O core. Length-prefixed frames, one
  dataclass per message, a state machine per role as data; bytes in (any split), events
  out, bytes to send. No sockets, no clocks.
- server.py: `ChatServer` (the client table, shared by its connections) and
  `ChatServerProtocol` (a thin shell per connection: flow control, heartbeats).
- client.py: `ChatClientProtocol` and `ChatClientHandler`, what the `muxio chat` CLI,
  the tests and the benchmark talk through.
- hosting.py: `protocol_factory(scheduler, config)` and the options, for every host
  (`muxio serve chat`, `python -m adapters --service chat`; see `muxio.handlers`).

Timers come from a `muxio.protocols.Scheduler` handed in by the service wiring; this package
imports nothing from muxio but `muxio.protocols`, so the same code runs on every backend,
on TCP and KCP, and on asyncio.
"""

from muxio.handlers.chat.client import ChatClientHandler, ChatClientProtocol, Reply
from muxio.handlers.chat.config import ChatClientConfig, ChatServerConfig
from muxio.handlers.chat.errors import (
    ERROR_NAMES,
    ChatError,
    ChatProtocolError,
    ChatRefusedError,
    ChatTimeoutError,
    ChatUsageError,
    ErrorCode,
    MalformedFrameError,
    UnknownTypeError,
)
from muxio.handlers.chat.framing import (
    CLOSED,
    DEFAULT_MAX_FRAME,
    NEED_DATA,
    Frame,
    FrameDecoder,
    FrameTooLargeError,
)
from muxio.handlers.chat.heartbeat import Heartbeat
from muxio.handlers.chat.hosting import (
    ALPN,
    DESCRIPTION,
    add_arguments,
    config_from,
    protocol_factory,
)
from muxio.handlers.chat.messages import (
    MESSAGE_OVERHEAD,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Bye,
    ByeOk,
    ClientEntry,
    Closing,
    ErrorResponse,
    GetList,
    GetName,
    GetTime,
    Hello,
    HelloOk,
    Incoming,
    Joined,
    LeaveReason,
    Left,
    ListOk,
    Message,
    MessageClass,
    MessageType,
    NameOk,
    Ping,
    Pong,
    Send,
    SendOk,
    TimeOk,
    decode,
    encode,
    message_class,
    type_name,
)
from muxio.handlers.chat.server import ChatServer, ChatServerProtocol, peer_address
from muxio.handlers.chat.session import (
    RECEIVES,
    SENDS,
    ChatSession,
    Event,
    InvalidFrame,
    Role,
    State,
)

__all__ = [
    "CLOSED", "DEFAULT_MAX_FRAME", "ERROR_NAMES", "MESSAGE_OVERHEAD", "MESSAGE_TYPES",
    "NEED_DATA", "PROTOCOL_VERSION", "RECEIVES", "SENDS", "SUPPORTED_VERSIONS", "Bye",
    "ByeOk", "ChatClientConfig", "ChatClientHandler", "ChatClientProtocol", "ChatError",
    "ChatProtocolError", "ChatRefusedError", "ChatServer", "ChatServerConfig",
    "ChatServerProtocol", "ChatSession", "ChatTimeoutError", "ChatUsageError", "ClientEntry",
    "Closing", "ErrorCode", "ErrorResponse", "Event", "Frame", "FrameDecoder",
    "FrameTooLargeError", "GetList", "GetName", "GetTime", "Heartbeat", "Hello", "HelloOk",
    "Incoming", "InvalidFrame", "Joined", "LeaveReason", "Left", "ListOk",
    "MalformedFrameError", "Message", "MessageClass", "MessageType", "NameOk", "Ping",
    "Pong", "Reply", "Role", "Send", "SendOk", "State", "TimeOk", "UnknownTypeError",
    "decode", "encode", "message_class", "peer_address", "type_name",
    # hosting shape (muxio.handlers)
    "ALPN", "DESCRIPTION", "add_arguments", "config_from", "protocol_factory",
]
