"""Where the server's RSS growth over many TLS handshakes goes: leak or heap fragmentation?

    python benchmarks/tls_heap.py                  # 3000 handshakes after a 300 warm-up
    python benchmarks/tls_heap.py --handshakes 10000

Runs full TLS 1.3 handshakes through muxio's TLS layer over the in-memory link (no sockets,
one process: the client and server layers, a few bytes each way, the server closes with
close_notify), then reports the process's RSS growth, the Python heap's growth (tracemalloc
over the measured handshakes), and the RSS once glibc's `malloc_trim(0)` has returned the
free parts of its heap to the kernel. A leak survives the trim; memory that was freed but
sits between live chunks of glibc's heap (fragmentation) does not.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import ssl
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

from muxio.bench.tls_certs import ThrowawayPki
from muxio.loop import Loop
from muxio.testing.memory import memory_pair
from muxio.testing.pairs import RecordingProtocol
from muxio.transports.tls import TlsTransport, client_context, server_context


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def handshake(loop: Loop, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext) -> None:
    client = RecordingProtocol()
    servers: list[RecordingProtocol] = []

    def make_server() -> RecordingProtocol:
        servers.append(RecordingProtocol())
        return servers[-1]

    client_tls = TlsTransport(client_ctx, loop, server_side=False,
                              app_protocol=client, server_hostname="localhost")
    server_tls = TlsTransport(server_ctx, loop, server_side=True,
                              app_factory=make_server)
    memory_pair(loop, client_tls, server_tls)
    loop.run_until(lambda: client.transport is not None and bool(servers)
                   and servers[0].transport is not None, timeout=30)
    client_tls.write(b"GET / HTTP/1.1\r\n\r\n")
    loop.run_until(lambda: bool(servers[0].received), timeout=30)
    server_tls.close()
    loop.run_until(lambda: bool(client.lost_with and servers[0].lost_with), timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        pki = ThrowawayPki.create(Path(directory))
        server_ctx = server_context(str(pki.server_cert), str(pki.server_key),
                                    alpn=["http/1.1"])
        client_ctx = client_context(cafile=str(pki.ca), alpn=["http/1.1"])
    with Loop("epoll") as loop:
        for _ in range(args.warmup):
            handshake(loop, client_ctx, server_ctx)
        gc.collect()
        before = rss_kib()
        tracemalloc.start()
        python_before = tracemalloc.get_traced_memory()[0]
        for _ in range(args.handshakes):
            handshake(loop, client_ctx, server_ctx)
        gc.collect()
        python_growth = tracemalloc.get_traced_memory()[0] - python_before
        tracemalloc.stop()
        grown = rss_kib() - before
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = rss_kib() - before
    per = 1024 / args.handshakes
    print(f"{args.handshakes} handshakes through the TLS layer (in memory):")
    print(f"  RSS growth               {grown:+7d} KiB ({grown * per:+.0f} B per handshake)")
    print(f"  Python heap growth       {python_growth / 1024:+7.1f} KiB (tracemalloc)")
    print(f"  RSS after malloc_trim(0) {trimmed:+7d} KiB ({trimmed * per:+.0f} B per handshake)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
