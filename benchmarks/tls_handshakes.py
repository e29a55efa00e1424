"""10 000 TLS handshakes against `muxio serve http --tls-cert`: fds and RSS stay flat.

    python benchmarks/tls_handshakes.py                      # 10 000 handshakes, epoll
    python benchmarks/tls_handshakes.py --handshakes 50000 --backend poll --resume
    python benchmarks/tls_handshakes.py --peer asyncio      # the same soak on asyncio's TLS

Each handshake is a new TCP connection, a full TLS 1.3 handshake (or a resumed one with
--resume), one GET / and a close, made by Python's blocking ssl client from this process.
The server's open fds and RSS are sampled every 1000 handshakes after a warm-up; the run
fails if the fds do not come back to the warm-up count or RSS grows by more than
--rss-limit MiB. This is a soak, not a test (tests/tls/test_hostile.py runs a bounded
count in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

from muxio.bench.tls_certs import ThrowawayPki

WARM_UP = 200


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def one_request(context: ssl.SSLContext, port: int,
                session: ssl.SSLSession | None) -> ssl.SSLSession | None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="localhost", session=session) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(4096):
            response += chunk
        if not response.endswith(b"Hello, World!\n"):
            raise RuntimeError(f"bad response: {response!r}")
        return sock.session


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handshakes", type=int, default=10_000)
    parser.add_argument("--backend", default="epoll")
    parser.add_argument("--peer", choices=("asyncio", "uvloop"), default=None,
                        help="soak a peer loop with its own TLS instead (for comparison)")
    parser.add_argument("--resume", action="store_true",
                        help="resume the TLS session (tickets) instead of full handshakes")
    parser.add_argument("--rss-limit", type=float, default=8.0, metavar="MiB")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        pki = ThrowawayPki.create(Path(directory))
        server = (["-m", "adapters", "--loop", args.peer, "--service", "http"] if args.peer
                  else ["-m", "muxio", "serve", "http", "--backend", args.backend])
        process = subprocess.Popen(
            [sys.executable, *server, "--host", "127.0.0.1", "--port", "0",
             *pki.server_flags()],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            port = int(line.split("127.0.0.1:")[1].split()[0].rstrip(","))
            context = pki.client_context()
            session = None
            for _ in range(WARM_UP):
                session = one_request(context, port, session if args.resume else None)
            time.sleep(0.2)  # the server's last close
            base_fds, base_rss = fd_count(process.pid), rss(process.pid)
            samples = []
            started = time.monotonic()
            for done in range(1, args.handshakes + 1):
                session = one_request(context, port, session if args.resume else None)
                if done % 1000 == 0 or done == args.handshakes:
                    samples.append({"handshakes": done, "fds": fd_count(process.pid),
                                    "rss": rss(process.pid)})
                    print(f"{done:>7} handshakes  fds {samples[-1]['fds']:>3} (was "
                          f"{base_fds})  RSS {samples[-1]['rss'] / 2**20:7.2f} MiB (was "
                          f"{base_rss / 2**20:.2f})", flush=True)
            seconds = time.monotonic() - started
            time.sleep(0.2)
            final_fds, final_rss = fd_count(process.pid), rss(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    growth = (final_rss - base_rss) / 2**20
    print(f"{args.handshakes} {'resumed' if args.resume else 'full'} handshakes in "
          f"{seconds:.1f} s ({args.handshakes / seconds:.0f}/s, client included); fds "
          f"{base_fds} -> {final_fds}; RSS growth {growth:.2f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "base_fds": base_fds,
                                         "base_rss": base_rss, "final_fds": final_fds,
                                         "final_rss": final_rss, "seconds": seconds}))
    if final_fds > base_fds or growth > args.rss_limit:
        print("LEAK: fds or RSS did not stay flat", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
