"""`muxio serve chat`: the chat-forward server (docs/chat-protocol.md) on any stream
transport, with or without TLS.

    muxio serve chat --port 7008
    muxio serve chat --backend epoll-et --heartbeat-interval 5 --heartbeat-misses 3
    muxio serve chat --transport kcp --port 7008                 # the same handler over UDP
    muxio serve chat --tls-cert cert.pem --tls-key key.pem       # over TLS (tcp or kcp)

The handler and its options come from `muxio.handlers.chat` (its hosting shape), which
`python -m adapters --service chat` uses as well to host it on asyncio, uvloop or Twisted.
"""

from __future__ import annotations

import argparse

from muxio.cli.services import add_transport_argument, handler_config, serve_stream
from muxio.cli.services.connlog import log_connections
from muxio.cli.services.tcp_service import TcpService, transport_label
from muxio.cli.tls_options import add_server_arguments
from muxio.handlers import chat as handler
from muxio.handlers.chat import ChatServer
from muxio.loop import Loop

DESCRIPTION = ("chat-forward: time, name, client list and message forwarding (TCP or KCP, "
               "optionally over TLS)")
DEFAULT_PORT = 7008
ALPN = handler.ALPN
"""What a TLS chat server offers in ALPN (and `muxio chat --tls` asks for)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_transport_argument(parser)
    handler.add_arguments(parser)
    add_server_arguments(parser, alpn=ALPN)


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
    chat = ChatServer(loop, handler_config(handler, args))
    server = serve_stream(log_connections(chat.protocol_factory, "chat", args), loop, args)
    return ChatService(server, chat, transport_label(args))
