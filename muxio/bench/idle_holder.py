"""Hold K idle connections open to a server until stdin closes: the clients that are
connected but silent (a chat user who is not typing, a kept-alive browser tab).

    python -m muxio.bench.idle_holder --port 7007 --connections 500

Prints {"held": K} once every connection is established, then waits for EOF on stdin
and closes them. Used by `muxio bench models` beside the active load generator, so the
memory a server spends on connections that do nothing shows up in its figures.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds allowed for each connect")
    args = parser.parse_args()
    held: list[socket.socket] = []
    try:
        for _ in range(args.connections):
            held.append(socket.create_connection((args.host, args.port), args.timeout))
        print(json.dumps({"held": len(held)}), flush=True)
        sys.stdin.read()  # until the runner closes our stdin
    finally:
        for sock in held:
            sock.close()


if __name__ == "__main__":
    main()
