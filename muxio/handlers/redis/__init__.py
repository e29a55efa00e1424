"""A small Redis client for handlers: RESP2 as a sans-I/O codec (`resp`), a pipelined,
bounded, reconnecting connection over any muxio stream transport (`client`), and the
chat server's cross-process directory on top of it (`chat_bus`, docs/chat-protocol.md
section 10).

Why our own client rather than the `redis` package: it runs in the server's own loop on
every backend and transport (the `redis` package blocks, or needs asyncio), it is bounded
the way every muxio peer is (reply sizes, commands in flight, bytes unsent), and RESP2 is a
few hundred lines as a pure state machine that the tests drive byte by byte. This package
imports only the handler API: the host hands in the connector that opens connections.
"""

from muxio.handlers.redis.client import (
    Connector,
    RedisBusy,
    RedisLimits,
    RedisLink,
    RedisProtocol,
    RedisUnavailable,
    Reply,
)
from muxio.handlers.redis.resp import (
    NEED_DATA,
    RedisError,
    RespParser,
    RespProtocolError,
    RespValue,
    encode_command,
    encode_reply,
)

__all__ = ["NEED_DATA", "Connector", "RedisBusy", "RedisError", "RedisLimits", "RedisLink",
           "RedisProtocol", "RedisUnavailable", "Reply", "RespParser", "RespProtocolError",
           "RespValue", "encode_command", "encode_reply"]
