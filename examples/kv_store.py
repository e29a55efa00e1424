"""A tiny key-value store: one line-based protocol, written once, served over TCP and KCP.

    python examples/kv_store.py serve --port 7010          # TCP 7010 and KCP on UDP 7011
    python examples/kv_store.py ask --port 7010 "SET colour blue" "GET colour"
    python examples/kv_store.py ask --port 7011 --transport kcp "GET colour"   # -> VALUE blue

The protocol, one command per line (UTF-8), one reply line each:

    SET key value   ->  OK            GET key  ->  VALUE value | NOT_FOUND
    DEL key         ->  OK | NOT_FOUND             anything else  ->  ERROR ...

`KvProtocol` never sees which transport carries it: the same class serves both servers,
which share one store. Input is hostile: a line longer than MAX_LINE closes the
connection, and the store holds at most MAX_KEYS keys.
"""

from __future__ import annotations

import argparse
import signal
import sys

import muxio

MAX_LINE = 4096
MAX_KEYS = 10_000


class KvProtocol(muxio.Protocol):
    """The server side: lines in, replies out, over any stream transport."""

    def __init__(self, store: dict[str, str] | None = None) -> None:
        self.store = {} if store is None else store
        self.buffer = b""

    def connection_made(self, transport: muxio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        replies = [self.reply(line.decode("utf-8", "replace").strip()) for line in lines]
        if replies:
            self.transport.write("".join(f"{reply}\n" for reply in replies).encode())
        if len(self.buffer) > MAX_LINE:
            self.transport.write(b"ERROR line too long\n")
            self.transport.close()

    def reply(self, line: str) -> str:
        command, _, rest = line.partition(" ")
        key, _, value = rest.partition(" ")
        if command == "SET" and key and value:
            if key not in self.store and len(self.store) >= MAX_KEYS:
                return "ERROR store full"
            self.store[key] = value
            return "OK"
        if command == "GET" and key:
            return f"VALUE {self.store[key]}" if key in self.store else "NOT_FOUND"
        if command == "DEL" and key:
            return "OK" if self.store.pop(key, None) is not None else "NOT_FOUND"
        return "ERROR usage: SET key value | GET key | DEL key"


class Asker(muxio.Protocol):
    """The client side: sends commands, collects one reply line per command."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        self.replies: list[str] = []
        self.buffer = b""
        self.lost = False

    def connection_made(self, transport: muxio.Transport) -> None:
        transport.write("".join(f"{command}\n" for command in self.commands).encode())

    def data_received(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        self.replies += [line.decode() for line in lines]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def serve(args: argparse.Namespace) -> None:
    store: dict[str, str] = {}
    with muxio.Loop(args.backend) as loop:
        servers = [muxio.serve(lambda: KvProtocol(store), args.host, port, transport=name,
                               loop=loop)
                   for name, port in (("tcp", args.port), ("kcp", args.port and args.port + 1))]
        where = ", ".join(f"{server.transport} on {args.host}:{server.port}" for server in servers)
        print(f"kv: serving {where} with {loop.backend}", flush=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, loop.stop)
        loop.run_forever()
        for server in servers:
            server.close()


def ask(args: argparse.Namespace) -> int:
    asker = Asker(args.commands)
    with muxio.Loop(args.backend) as loop:
        connecting = muxio.connect(lambda: asker, args.host, args.port,
                                   transport=args.transport, loop=loop)
        transport, _ = loop.run_until_complete(connecting, timeout=10)
        loop.run_until(lambda: len(asker.replies) >= len(args.commands) or asker.lost,
                       timeout=10)
        transport.close()
        loop.run_until(lambda: asker.lost, timeout=10)
    print("\n".join(asker.replies))
    return 0 if len(asker.replies) == len(args.commands) else 1


def add_common_options(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """--backend, --host, --port; without defaults (SUPPRESS) for the copy after the command,
    so that `--port 0 serve` and `serve --port 0` both work and neither overwrites the other."""
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--backend", default=default(None),
                        help="poller backend (default: auto)")
    parser.add_argument("--host", default=default("127.0.0.1"))
    parser.add_argument("--port", type=int, default=default(7010),
                        help="serve: TCP port, KCP on the next one (0: any free ports); "
                             "ask: the port to ask")


def main() -> int:
    parser = argparse.ArgumentParser(description="a tiny key-value store over TCP and KCP")
    add_common_options(parser)
    after = argparse.ArgumentParser(add_help=False)  # the same options after the command
    add_common_options(after, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", parents=[after], help="serve the store over TCP and KCP")
    asking = commands.add_parser("ask", parents=[after],
                                 help="send commands, print the replies")
    asking.add_argument("--transport", default="tcp", choices=("tcp", "kcp"))
    asking.add_argument("commands", nargs="+", metavar="COMMAND")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
        return 0
    return ask(args)


if __name__ == "__main__":
    sys.exit(main())
