"""Hold many idle TCP connections to a server: the clients that are connected but silent
(a chat user who is not typing, a kept-alive browser tab; the C10K benchmark's idle side).

    python -m muxio.bench.idle_holder --port 7007 --connections 500   # muxio bench models
    python -m muxio.bench.idle_holder --port 7007 [--source 127.0.0.2]  # muxio bench scale

With `--connections K`: opens K connections, one at a time, prints {"held": K} once every
one is established, then waits for EOF on stdin and closes them (exit 1 with the reason
on stderr if they cannot all be opened).

Without it, it reads commands on stdin, one a line, and answers each on stdout:

    hold N     open connections until N are held  -> "held N" (or "error ...")
    probe N    send one byte on N held connections, spread over all of them, and read
               each one's echo                     -> "held M" (or "error ...")
    release    close them all                      -> "held 0"

EOF on stdin closes everything and exits. The connections send nothing: each costs the
server one registered fd and its per-connection state, which is what `muxio bench scale`
measures. Connects are non-blocking, in batches of `BATCH` (a server that accepts slowly
makes a batch wait, not the whole run stall on one SYN retransmit). `--source` binds the
client side to another loopback address, since one (source address, server address and
port) has only ~28 000 ephemeral ports: more connections need more source addresses.
The soft open-file limit is raised to the hard one (N cannot exceed it).
"""

from __future__ import annotations

import argparse
import errno
import json
import select
import socket
import sys
import time

from muxio.cli.limits import raise_open_file_limit

BATCH = 512
CONNECT_TIMEOUT = 60.0
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
"""Pick the source port at connect (4-tuple unique), not at bind (unique per address)."""


class Holder:
    def __init__(self, host: str, port: int, source: str | None, batch: int = BATCH) -> None:
        self.address = (host, port)
        self.source = source
        self.batch = batch
        self.sockets: list[socket.socket] = []

    def hold(self, count: int) -> None:
        while len(self.sockets) < count:
            self._connect_batch(min(self.batch, count - len(self.sockets)))

    def _connect_batch(self, size: int) -> None:
        pending: dict[int, socket.socket] = {}
        poller = select.epoll()
        try:
            for _ in range(size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                if self.source is not None:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                    sock.bind((self.source, 0))
                code = sock.connect_ex(self.address)
                if code not in (0, errno.EINPROGRESS):
                    sock.close()
                    raise OSError(code, f"connect to {self.address}: {errno.errorcode[code]}")
                pending[sock.fileno()] = sock
                poller.register(sock.fileno(), select.EPOLLOUT)
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} connects still pending after "
                                       f"{CONNECT_TIMEOUT:g} s")
                for fd, _events in poller.poll(1.0):
                    sock = pending.pop(fd)
                    poller.unregister(fd)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        sock.close()
                        raise OSError(code, f"connect failed: {errno.errorcode[code]}")
                    self.sockets.append(sock)
        except BaseException:
            for sock in pending.values():
                sock.close()
            raise
        finally:
            poller.close()

    def probe(self, count: int) -> None:
        """Send one byte on `count` held connections, spread evenly over them, and wait
        for every echo: the server still serves connections that sat idle."""
        if not 0 <= count <= len(self.sockets):
            raise ValueError(f"cannot probe {count} of {len(self.sockets)} connections")
        stride = len(self.sockets) // count if count else 1
        chosen = {sock.fileno(): sock for sock in self.sockets[::stride][:count]}
        poller = select.epoll()
        try:
            for fd, sock in chosen.items():
                sock.send(b"p")
                poller.register(fd, select.EPOLLIN)
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while chosen:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(chosen)} probes unanswered after "
                                       f"{CONNECT_TIMEOUT:g} s")
                for fd, _events in poller.poll(1.0):
                    if chosen[fd].recv(16) != b"p":
                        raise OSError(f"probe on fd {fd}: the connection was closed or "
                                      f"answered something else")
                    poller.unregister(fd)
                    del chosen[fd]
        finally:
            poller.close()

    def release(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def hold_until_eof(holder: Holder, count: int) -> int:
    """Open `count` connections one at a time (each connect completes before the next, as
    `muxio bench models` expects), say so, hold them until stdin closes."""
    try:
        holder.hold(count)
        print(json.dumps({"held": len(holder.sockets)}), flush=True)
        sys.stdin.read()  # until the runner closes our stdin
    except OSError as exc:
        print(f"idle holder: {exc}", file=sys.stderr)
        return 1
    finally:
        holder.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default=None, help="local address to connect from")
    parser.add_argument("--connections", type=int, default=None, metavar="K",
                        help="hold K connections until stdin closes (no commands)")
    args = parser.parse_args(argv)
    limit = raise_open_file_limit()
    if args.connections is not None:
        return hold_until_eof(Holder(args.host, args.port, args.source, batch=1),
                              args.connections)
    holder = Holder(args.host, args.port, args.source)
    try:
        for line in sys.stdin:
            command = line.split()
            try:
                if command[:1] == ["hold"] and len(command) == 2:
                    count = int(command[1])
                    if count > limit - 16:
                        raise OSError(f"cannot hold {count}: the open-file limit is {limit}")
                    holder.hold(count)
                elif command[:1] == ["probe"] and len(command) == 2:
                    holder.probe(int(command[1]))
                elif command == ["release"]:
                    holder.release()
                else:
                    raise ValueError(f"unknown command {line.strip()!r}")
            except (OSError, ValueError) as exc:
                print(f"error {exc}", flush=True)
                continue
            print(f"held {len(holder.sockets)}", flush=True)
    finally:
        holder.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
