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


def wrk_load(connections: int = 50, path: str = "/") -> Callable[
        [int, float, set[int] | None], int]:
    def load(port: int, duration: float, cpus: set[int] | None) -> int:
        wrk = shutil.which("wrk")
        if wrk is None:
            raise BenchError("wrk is not installed: apt-get install wrk")
        out = _run_loader([wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
                           f"http://127.0.0.1:{port}{path}"], cpus, duration + 60)
        match = re.search(r"(\d+) requests in", out)
        if match is None or "Socket errors" in out:
            raise BenchError(f"wrk reported no requests or socket errors:\n{out}")
        return int(match.group(1))
    return load


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


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
