"""Workloads `muxio bench` knows: a service, and a load generator in its own process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

from muxio.bench.runner import BenchError, Target, Workload, aio_target, pin


def _run_loader(argv: list[str], cpus: set[int] | None, timeout: float) -> str:
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        pin(process.pid, cpus)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise BenchError(f"load generator {argv[0]} did not finish in {timeout} s") from None
    if process.returncode != 0:
        raise BenchError(f"load generator {argv[0]} failed ({process.returncode}): "
                         f"{stderr.strip()[-500:]}")
    return stdout


def echo_load(connections: int = 50, size: int = 100) -> Callable[
        [int, float, set[int] | None], int]:
    def load(port: int, duration: float, cpus: set[int] | None) -> int:
        out = _run_loader([sys.executable, "-m", "muxio.bench.loadgen_echo", "--port",
                           str(port), "--connections", str(connections), "--size", str(size),
                           "--duration", str(duration)], cpus, duration + 60)
        return int(json.loads(out.strip().splitlines()[-1])["messages"])
    return load


def wrk_load(connections: int = 50, path: str = "/", *, scheme: str = "http",
             headers: tuple[str, ...] = ()) -> Callable[[int, float, set[int] | None], int]:
    """wrk against the server; `scheme="https"` for TLS (wrk does not verify the
    certificate), `headers=("Connection: close",)` for a new connection per request."""
    def load(port: int, duration: float, cpus: set[int] | None) -> int:
        wrk = shutil.which("wrk")
        if wrk is None:
            raise BenchError("wrk is not installed: apt-get install wrk")
        extra = [argument for header in headers for argument in ("-H", header)]
        out = _run_loader([wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
                           *extra, f"{scheme}://127.0.0.1:{port}{path}"], cpus, duration + 60)
        match = re.search(r"(\d+) requests in", out)
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                           r"timeout (\d+)", out)
        if match is None or (errors is not None and not _closing_reads_only(errors, headers)):
            raise BenchError(f"wrk reported no requests or socket errors:\n{out}")
        if "Non-2xx" in out:
            raise BenchError(f"wrk saw non-2xx responses:\n{out}")
        return int(match.group(1))
    return load


def _closing_reads_only(errors: re.Match[str], headers: tuple[str, ...]) -> bool:
    """With Connection: close, wrk counts the server's close after each response as a
    'read' socket error; connect, write and timeout errors are real."""
    connect, _read, write, timeout = (int(value) for value in errors.groups())
    return "Connection: close" in headers and connect == write == timeout == 0


def chat_load(pairs: int = 10, window: int = 32) -> Callable[
        [int, float, set[int] | None], int]:
    def load(port: int, duration: float, cpus: set[int] | None) -> int:
        out = _run_loader([sys.executable, "-m", "muxio.bench.loadgen_chat", "--port",
                           str(port), "--pairs", str(pairs), "--window", str(window),
                           "--duration", str(duration)], cpus, duration + 120)
        return int(json.loads(out.strip().splitlines()[-1])["messages"])
    return load


def aio_targets(app: str) -> Callable[[Sequence[str], Sequence[str]], list[Target]]:
    """asyncio and uvloop (as peers), then muxio.aio on each backend, hosting `app`."""
    def build(backends: Sequence[str], peers: Sequence[str]) -> list[Target]:
        return ([aio_target(peer, app) for peer in peers]
                + [aio_target("muxio", app, backend) for backend in backends])
    return build


AIO_PEERS = ("asyncio", "uvloop")
"""Loops an asyncio application runs on besides muxio.aio."""

WORKLOADS: dict[str, Workload] = {
    "echo": Workload("echo", "echo", "msg",
                     "ping-pong of 100-byte messages over 50 connections", echo_load()),
    "http": Workload("http", "http", "req", "wrk -t1 -c50 GET / (hello endpoint)",
                     wrk_load()),
    "http-close": Workload("http-close", "http", "req",
                           "wrk -t1 -c50 GET / with Connection: close (a new connection, "
                           "and with --tls a new handshake, per request)",
                           wrk_load(headers=("Connection: close",))),
    "chat": Workload("chat", "chat", "msg",
                     "10 sender/receiver pairs forwarding 100-byte messages, 32 in flight "
                     "per sender", chat_load()),
    "aio-echo": Workload("aio-echo", "echo", "msg",
                         "asyncio-streams echo server (start_server, read/write/drain): "
                         "ping-pong of 100-byte messages over 50 connections, on asyncio, "
                         "uvloop and muxio.aio", echo_load(), targets=aio_targets("echo"),
                         peers=AIO_PEERS),
    "aio-http": Workload("aio-http", "aiohttp", "req",
                         "aiohttp 'Hello, World!' app under wrk -t1 -c50, on asyncio, uvloop "
                         "and muxio.aio", wrk_load(), targets=aio_targets("aiohttp"),
                         peers=AIO_PEERS),
}


TLS_WORKLOADS: dict[str, Workload] = {
    "http": Workload("http", "http", "req", "wrk -t1 -c50 GET / over HTTPS, keep-alive "
                     "(steady state: one handshake per connection)",
                     wrk_load(scheme="https")),
    "http-close": Workload("http-close", "http", "req",
                           "wrk -t1 -c50 GET / over HTTPS with Connection: close (a full TLS "
                           "handshake per request)",
                           wrk_load(scheme="https", headers=("Connection: close",))),
}
"""The workloads `muxio bench NAME --tls` runs: the same service with --tls-cert/--tls-key
on muxio and on the peers (asyncio and uvloop with their own TLS)."""


def with_tls(workload: Workload, server_flags: list[str]) -> Workload:
    """`workload` over TLS: the TLS variant's load generator, the server's TLS flags."""
    if workload.name not in TLS_WORKLOADS:
        raise BenchError(f"--tls is not available for {workload.name}; it is for "
                         f"{', '.join(TLS_WORKLOADS)}")
    tls = TLS_WORKLOADS[workload.name]
    return Workload(f"{tls.name} (tls)", tls.service, tls.unit, tls.description, tls.load,
                    (*workload.service_args, *server_flags))


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
