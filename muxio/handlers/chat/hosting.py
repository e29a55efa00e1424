"""What a host needs to run the chat server (the shape described in `muxio.handlers`):
its command-line options, the config they make, and the protocol factory.

    chat = ChatServer(scheduler, config_from(args))     # a host that closes it on shutdown
    factory = protocol_factory(scheduler, config)       # a host that only serves

A bus (`muxio.handlers.chat.bus.ChatBus`) is optional: a host that can open connections
builds one and passes it (`protocol_factory(scheduler, config, bus=bus)`, or
`ChatServer(..., bus=bus)`), as `muxio serve chat --bus redis://HOST:PORT` does; the
handler never opens one itself. Without it, the server is alone, as always.
"""

from __future__ import annotations

import argparse

from muxio.handlers.chat.bus import ChatBus
from muxio.handlers.chat.config import ChatServerConfig
from muxio.handlers.chat.server import ChatServer
from muxio.protocols import ProtocolFactory, Scheduler

DESCRIPTION = "chat-forward: time, name, client list and message forwarding (TCP or KCP)"
_DEFAULTS = ChatServerConfig()
_FLAGS = {"heartbeat_interval": "--heartbeat-interval", "heartbeat_misses": "--heartbeat-misses",
          "max_frame": "--max-frame", "max_output_buffer": "--max-output-buffer",
          "max_clients": "--max-clients", "hello_timeout": "--hello-timeout",
          "max_ungreeted": "--max-ungreeted"}
ALPN: tuple[str, ...] = ("muxio-chat",)
"""What a TLS host offers in ALPN, and `muxio chat --tls` asks for."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's limits and heartbeat, as flags."""
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
    parser.add_argument("--hello-timeout", type=float, metavar="S",
                        default=_DEFAULTS.hello_timeout,
                        help="close a connection that has not said HELLO within S seconds "
                             f"(default: {_DEFAULTS.hello_timeout:g})")
    parser.add_argument("--max-ungreeted", type=int, metavar="N",
                        default=_DEFAULTS.max_ungreeted,
                        help="connections waiting for HELLO at once; one more evicts the "
                             f"oldest (default: {_DEFAULTS.max_ungreeted}; keep it well "
                             f"below ulimit -n)")


def config_from(args: argparse.Namespace) -> ChatServerConfig:
    """The server config; a ValueError names the command-line flag at fault."""
    try:
        return ChatServerConfig(
            heartbeat_interval=args.heartbeat_interval, heartbeat_misses=args.heartbeat_misses,
            max_frame=args.max_frame, max_output_buffer=args.max_output_buffer,
            max_clients=args.max_clients, hello_timeout=args.hello_timeout,
            max_ungreeted=args.max_ungreeted)
    except ValueError as exc:
        message = str(exc)
        for field, flag in _FLAGS.items():
            message = message.replace(f"ChatServerConfig.{field}", flag)
        raise ValueError(message) from None


def protocol_factory(scheduler: Scheduler, config: ChatServerConfig | None = None, *,
                     bus: ChatBus | None = None) -> ProtocolFactory:
    """One chat server (its client table, joined to others by `bus` if given) whose
    connections the factory makes."""
    return ChatServer(scheduler, config or ChatServerConfig(), bus=bus).protocol_factory
