"""`muxio connect HOST PORT`: a netcat-style client for any stream transport.

    muxio serve echo --transport kcp --port 7000 &
    echo hello | muxio connect localhost 7000 --transport kcp

Theory of operation
-------------------
Standard input goes to the transport, the transport's bytes go to standard output. Stdin
is read by a thread (blocking reads work on a terminal, a pipe and a regular file alike,
on every backend: epoll refuses regular files) and handed to the loop; while the transport
has paused writing, the thread waits, so a large file never piles up in memory.

End of input both ways, as `nc -N` does: EOF on stdin half-closes the connection
(`write_eof`: a TCP FIN, a KCP end-of-stream message) and the client goes on reading; EOF
from the peer ends the session once stdout is flushed. Exit codes follow nc: 0 when the
session ended normally, 1 when the connection failed (refused, reset, timed out), with one
`muxio: error:` line saying why; 2 for a usage error (an unknown transport or backend).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from muxio.cli.main import add_backend_option
from muxio.errors import ConfigError
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports.registry import STREAM_TRANSPORTS, stream_transport

READ_SIZE = 64 * 1024
CONNECT_TIMEOUT = 30.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "connect", help="netcat-style client: stdin to a server, its replies to stdout",
        description="Connect to HOST PORT over a stream transport; copy stdin to it and "
                    "what it sends to stdout. Exit 0 when both sides ended, 1 when the "
                    "connection failed.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--transport", default="tcp", choices=sorted(STREAM_TRANSPORTS),
                        help="stream transport (default: tcp)")
    parser.add_argument("--idle-timeout", type=float, default=120.0,
                        help="KCP: seconds of silence before the session is dropped")
    add_backend_option(parser)
    parser.set_defaults(func=run)


class _Copier(Protocol):
    """Transport bytes to stdout; records how the session ended."""

    def __init__(self, loop: Loop, out: int) -> None:
        self.loop = loop
        self.out = out
        self.transport: Transport | None = None
        self.error: Exception | None = None
        self.finished = False
        self.writable = threading.Event()
        self.writable.set()

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.out, view)
            view = view[written:]

    def eof_received(self) -> bool:
        return False  # the peer is done: close our side too, the session ends

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        self.finished = True
        self.writable.set()  # release the stdin thread


def _pump_stdin(loop: Loop, client: _Copier, stdin: int) -> None:
    """Thread: read stdin, hand each chunk to the loop; EOF becomes write_eof."""
    while True:
        client.writable.wait()
        if client.finished:  # set by the loop thread meanwhile
            return
        try:
            chunk = os.read(stdin, READ_SIZE)
        except OSError:
            chunk = b""
        if loop.is_closed():
            return
        if not chunk:
            loop.call_soon_threadsafe(_send_eof, client)
            return
        loop.call_soon_threadsafe(_send, client, chunk)


def _send(client: _Copier, chunk: bytes) -> None:
    if client.transport is not None and not client.transport.is_closing():
        client.transport.write(chunk)


def _send_eof(client: _Copier) -> None:
    transport = client.transport
    if transport is not None and not transport.is_closing() and transport.can_write_eof():
        transport.write_eof()


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port <= 65535:
        raise ConfigError(f"port {args.port} is out of range 1-65535")
    spec = stream_transport(args.transport)
    where = f"{args.transport} {args.host} port {args.port}"
    with Loop(cli_backend=args.backend) as loop:
        client = _Copier(loop, sys.stdout.fileno())
        options: dict[str, Any] = {}
        if args.transport == "kcp":
            options["idle_timeout"] = args.idle_timeout
        try:
            future = spec.connect(lambda: client, args.host, args.port, loop=loop, **options)
            loop.run_until_complete(future, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            return _failed(where, exc)
        except TimeoutError:
            return _failed(where, TimeoutError(f"no answer within {CONNECT_TIMEOUT:g} s"))
        threading.Thread(target=_pump_stdin, args=(loop, client, sys.stdin.fileno()),
                         name="muxio-connect-stdin", daemon=True).start()
        loop.run_until(lambda: client.finished)
        loop.run_once(0)
    if client.error is not None:
        return _failed(where, client.error)
    return 0


def _failed(where: str, exc: BaseException) -> int:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    reason = reason or type(exc).__name__
    print(f"muxio: error: {where}: {reason}", file=sys.stderr)
    return 1
