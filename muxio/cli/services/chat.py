"""`muxio serve chat`: the chat-forward server (docs/chat-protocol.md) on any stream
transport, with or without TLS.

    muxio serve chat --port 7008
    muxio serve chat --backend epoll-et --heartbeat-interval 5 --heartbeat-misses 3
    muxio serve chat --transport kcp --port 7008                 # the same handler over UDP
    muxio serve chat --tls-cert cert.pem --tls-key key.pem       # over TLS (tcp or kcp)
    muxio serve chat --bus redis://10.0.0.5:6379                 # one chat across servers

With `--bus`, every server started with the same Redis is part of one chat: ids are
unique across them and LIST / SEND reach every client (docs/chat-protocol.md section 10).
The bus's Redis connections are muxio TCP connections on the server's own loop, opened
here and handed to the handler (which never opens a connection itself).

The handler and its options come from `muxio.handlers.chat` (its hosting shape), which
`python -m adapters --service chat` uses as well to host it on asyncio, uvloop or Twisted.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from muxio.api import connect
from muxio.cli.services import add_transport_argument, handler_config, serve_stream
from muxio.cli.services.connlog import log_connections
from muxio.cli.services.tcp_service import TcpService, transport_label
from muxio.cli.tls_options import add_server_arguments
from muxio.errors import ConfigError
from muxio.futures import Future
from muxio.handlers import chat as handler
from muxio.handlers.chat import ChatServer
from muxio.handlers.redis import Connector, RedisLimits
from muxio.handlers.redis.chat_bus import (
    BusUrlError,
    RedisBusConfig,
    RedisChatBus,
    parse_bus_url,
)
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport

DESCRIPTION = ("chat-forward: time, name, client list and message forwarding (TCP or KCP, "
               "optionally over TLS)")
DEFAULT_PORT = 7008
ALPN = handler.ALPN
"""What a TLS chat server offers in ALPN (and `muxio chat --tls` asks for)."""


_BUS_DEFAULTS = RedisBusConfig(address=parse_bus_url("redis://localhost"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_transport_argument(parser)
    handler.add_arguments(parser)
    add_server_arguments(parser, alpn=ALPN)
    bus = parser.add_argument_group("bus (one chat across processes and machines)")
    bus.add_argument("--bus", metavar="redis://HOST:PORT",
                     help="join every chat server started with the same Redis: ids unique "
                          "across them, LIST and SEND reach all their clients (default: "
                          "none, this server alone)")
    bus.add_argument("--bus-ttl", type=float, metavar="S",
                     default=_BUS_DEFAULTS.presence_ttl,
                     help="a server's presence in Redis lives S seconds after its last "
                          "heartbeat (sent every S/3): a killed server's clients leave the "
                          f"list within S (default: {_BUS_DEFAULTS.presence_ttl:g})")
    bus.add_argument("--bus-namespace", metavar="PREFIX", default=_BUS_DEFAULTS.namespace,
                     help="Redis key and channel prefix: servers with the same Redis and "
                          f"prefix form one chat (default: {_BUS_DEFAULTS.namespace})")


def bus_config_from(args: argparse.Namespace) -> RedisBusConfig | None:
    """The --bus options, or None without --bus; a ConfigError names the flag at fault."""
    if getattr(args, "bus", None) is None:
        return None
    try:
        return RedisBusConfig(address=parse_bus_url(args.bus), presence_ttl=args.bus_ttl,
                              namespace=args.bus_namespace, limits=RedisLimits())
    except BusUrlError as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:
        message = str(exc).replace("RedisBusConfig.presence_ttl", "--bus-ttl")
        raise ConfigError(message.replace("RedisBusConfig.namespace",
                                          "--bus-namespace")) from None


def tcp_connector(loop: Loop, host: str, port: int, timeout: float) -> Connector:
    """Opens the bus's connections: muxio TCP on `loop` (any backend)."""
    def open_connection(factory: Callable[[], Protocol],
                        on_error: Callable[[Exception], object]) -> None:
        def connected(future: Future[tuple[Transport, Protocol]]) -> None:
            if future.cancelled():
                on_error(ConnectionError("connecting to Redis was cancelled"))
                return
            error = future.exception()
            if error is not None:
                on_error(error if isinstance(error, Exception) else Exception(str(error)))

        connect(factory, host, port, loop=loop, timeout=timeout).add_done_callback(connected)
    return open_connection


class ChatService(TcpService):
    """The transport server plus the chat server whose clients it carries."""

    def __init__(self, server: object, chat: ChatServer, transport: str,
                 bus: RedisChatBus | None = None) -> None:
        super().__init__(server, transport)
        self.chat = chat
        self.bus = bus

    def describe(self) -> str:
        where = super().describe()
        return where if self.bus is None else f"{where}, bus {self.bus.description}"

    def close(self) -> None:
        """CLOSING to every client (so they know why), then stop listening and close; with
        a bus, this server's clients leave the directory."""
        self.chat.close("the server is shutting down")
        if self.bus is not None:
            self.bus.close()
        super().close()

    def drain(self) -> None:
        """Stop accepting; CLOSING to every client, each closed once its output is sent."""
        self.on_drain = lambda: self.chat.close("the server is shutting down")
        super().drain()


def start(loop: Loop, args: argparse.Namespace) -> ChatService:
    config = handler_config(handler, args)
    bus_config = bus_config_from(args)
    bus = None
    if bus_config is not None:
        address = bus_config.address
        bus = RedisChatBus(loop, tcp_connector(loop, address.host, address.port,
                                               bus_config.limits.connect_timeout),
                           bus_config)
    chat = ChatServer(loop, config, bus=bus)
    try:
        server = serve_stream(log_connections(chat.protocol_factory, "chat", args), loop,
                              args)
    except BaseException:
        if bus is not None:
            bus.close()
        raise
    return ChatService(server, chat, transport_label(args), bus)
