"""Instructions per message (or request) that an asyncio app costs its server, on asyncio's
loop, uvloop and muxio.aio: counted by valgrind, so the figure does not depend on how
loaded the machine is (timings on a shared host are noise; `muxio bench aio-echo` /
`aio-http` measure time when the machine is quiet).

    python benchmarks/aio_instructions.py --app echo
    python benchmarks/aio_instructions.py --app aiohttp --targets asyncio,uvloop,muxio:epoll

Each server (muxio/bench/aio_servers.py) runs under `valgrind --tool=callgrind` twice,
serving N1 and then N2 operations from a client outside valgrind; the difference of the
two instruction totals over N2 - N1 is the cost of one operation, without start-up and
imports. Only user-space instructions are counted: system calls and the kernel's share
are not, and neither are cache misses, so this ranks the Python-level work of each loop;
it is not a throughput figure. echo: 50 connections ping-ponging 100-byte messages;
aiohttp: `ab -k -c 50` on GET /.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APPS = ("echo", "aiohttp")
CONNECTIONS = 50


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def echo_client(port: int, messages: int) -> None:
    """`messages` round trips of 100 bytes, spread over CONNECTIONS connections."""

    async def one(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(b"m" * 100)
            await reader.readexactly(100)
        writer.close()
        await writer.wait_closed()

    share, extra = divmod(messages, CONNECTIONS)
    await asyncio.gather(*(one(share + (index < extra)) for index in range(CONNECTIONS)))


def http_client(port: int, requests: int) -> None:
    ab = shutil.which("ab")
    if ab is None:
        sys.exit("ab is not installed: apt-get install apache2-utils")
    out = subprocess.run([ab, "-q", "-k", "-n", str(requests), "-c", str(CONNECTIONS),
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True).stdout
    complete = re.search(r"Complete requests:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    if complete is None or int(complete.group(1)) != requests or failed is None \
            or int(failed.group(1)):
        sys.exit(f"ab did not complete {requests} requests cleanly:\n{out}")


def instructions(app: str, target: str, operations: int, workdir: Path) -> int:
    """Total instructions of one server run serving `operations` operations."""
    loop, _, backend = target.partition(":")
    port = free_port()
    out_file = workdir / f"callgrind.{loop}.{backend or 'default'}.{operations}"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
            sys.executable, "-m", "muxio.bench.aio_servers", "--app", app, "--loop", loop,
            "--port", str(port)]
    if backend:
        argv += ["--backend", backend]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as server:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "serving" not in line:
            server.kill()
            sys.exit(f"{target} did not start under valgrind: {line!r}")
        if app == "echo":
            asyncio.run(echo_client(port, operations))
        else:
            http_client(port, operations)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=600)
    summary = re.search(r"^summary: (\d+)", out_file.read_text(), re.MULTILINE)
    if summary is None:
        sys.exit(f"no instruction total in {out_file}")
    return int(summary.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=APPS, default="echo")
    parser.add_argument("--targets", default="asyncio,uvloop,muxio:epoll,muxio:epoll-et",
                        help="asyncio, uvloop, muxio:BACKEND (comma-separated)")
    parser.add_argument("--operations", default="2000,8000",
                        help="N1,N2: operations served in the two runs of each target")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    low, high = (int(part) for part in args.operations.split(","))
    targets = [name for name in args.targets.split(",") if name]
    unit = "message" if args.app == "echo" else "request"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for target in targets:
            started = time.monotonic()
            counts = [instructions(args.app, target, n, Path(scratch)) for n in (low, high)]
            per_op = (counts[1] - counts[0]) / (high - low)
            rows.append((target, per_op))
            print(f"{target}: {per_op:,.0f} instructions per {unit} "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    reference = dict(rows).get("asyncio")
    print(f"{'target':<20} {'instr/' + unit:>16} {'x asyncio':>10}")
    for target, per_op in rows:
        ratio = f"{per_op / reference:.2f}" if reference else "-"
        print(f"{target:<20} {per_op:>16,.0f} {ratio:>10}")
    print(f"(user-space instructions counted by callgrind; {os.cpu_count()} CPUs; "
          f"runs of {low} and {high} {unit}s)")


if __name__ == "__main__":
    main()
