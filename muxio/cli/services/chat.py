"""`muxio serve chat`: the chat-forward server (docs/chat-protocol.md) on TCP or KCP.

    muxio serve chat --port 7008
    muxio serve chat --backend epoll-et --heartbeat-interval 5 --heartbeat-misses 3
    muxio serve chat --transport kcp --port 7008                 # the same handler over UDP
    muxio serve chat --tls-cert cert.pem --tls-key key.pem       # over TLS (tcp or kcp)

`protocol_factory(scheduler, args)` also lets `python -m adapters --service chat` host the
same handler on asyncio, uvloop or Twisted.
"""

from __future__ import annotations

import argparse

from muxio.cli.services.tcp_service import TcpService, serve_stream, transport_label
from muxio.cli.tls_options import add_server_arguments
from muxio.errors import ConfigError
from muxio.handlers.chat import ChatServer, ChatServerConfig
from muxio.loop import Loop
from muxio.protocols import ProtocolFactory, Scheduler
from muxio.transports.registry import STREAM_TRANSPORTS

DESCRIPTION = ("chat-forward: time, name, client list and message forwarding (TCP or KCP, "
               "optionally over TLS)")
ALPN = ("muxio-chat",)
"""What a TLS chat server offers in ALPN (and `muxio chat --tls` asks for)."""
DEFAULT_PORT = 7008
_DEFAULTS = ChatServerConfig()
_FLAGS = {"heartbeat_interval": "--heartbeat-interval", "heartbeat_misses": "--heartbeat-misses",
          "max_frame": "--max-frame", "max_output_buffer": "--max-output-buffer",
          "max_clients": "--max-clients"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=sorted(STREAM_TRANSPORTS), default="tcp",
                        help="stream transport (default: tcp; kcp runs over UDP)")
    parser.add_argument("--heartbeat-interval", type=float, metavar="S",
                        default=_DEFAULTS.heartbeat_interval,
                        help="PING a client after this many seconds of silence "
                             f"(default: {_DEFAULTS.heartbeat_interval:g})")
    parser.add_argument("--heartbeat-misses", type=int, metavar="N",
                        default=_DEFAULTS.heartbeat_misses,
                        help="drop a client silent for N intervals: a dead peer "
                             f"(default: {_DEFAULTS.heartbeat_misses})")
    parser.add_argument("--max-frame", type=int, metavar="BYTES",
                        default=_DEFAULTS.max_frame,
                        help=f"largest frame accepted (default: {_DEFAULTS.max_frame})")
    parser.add_argument("--max-output-buffer", type=int, metavar="BYTES",
                        default=_DEFAULTS.max_output_buffer,
                        help="bytes waiting for one client before it is dropped as a slow "
                             f"receiver (default: {_DEFAULTS.max_output_buffer})")
    parser.add_argument("--max-clients", type=int, metavar="N",
                        default=_DEFAULTS.max_clients,
                        help=f"clients at once (default: {_DEFAULTS.max_clients})")
    add_server_arguments(parser, alpn=ALPN)


def config_from(args: argparse.Namespace) -> ChatServerConfig:
    """The server config, with errors naming the command-line flag."""
    try:
        return ChatServerConfig(
            heartbeat_interval=args.heartbeat_interval, heartbeat_misses=args.heartbeat_misses,
            max_frame=args.max_frame, max_output_buffer=args.max_output_buffer,
            max_clients=args.max_clients)
    except ValueError as exc:
        message = str(exc)
        for field, flag in _FLAGS.items():
            message = message.replace(f"ChatServerConfig.{field}", flag)
        raise ConfigError(message) from None


def chat_server(scheduler: Scheduler, args: argparse.Namespace) -> ChatServer:
    return ChatServer(scheduler, config_from(args))


def protocol_factory(scheduler: Scheduler, args: argparse.Namespace) -> ProtocolFactory:
    """The handler factory, for any host (muxio's loop, or asyncio/uvloop/Twisted)."""
    return chat_server(scheduler, args).protocol_factory


class ChatService(TcpService):
    """The transport server plus the chat server whose clients it carries."""

    def __init__(self, server: object, chat: ChatServer, transport: str) -> None:
        super().__init__(server, transport)
        self.chat = chat

    def close(self) -> None:
        """CLOSING to every client (so they know why), then stop listening and close."""
        self.chat.close("the server is shutting down")
        super().close()


def start(loop: Loop, args: argparse.Namespace) -> ChatService:
    chat = chat_server(loop, args)
    server = serve_stream(chat.protocol_factory, args, loop)
    return ChatService(server, chat, transport_label(args))
