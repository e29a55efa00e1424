"""Ping-pong and bulk transfer over a real link: TCP, muxio's KCP and the C ikcp, one run.

    python -m muxio.bench.kcp_link run --kind kcp --profile fast --workload pingpong

Theory of operation
-------------------
One run = one server process (`serve`, a child started by `run`) and one client (this
process), on whatever network the process is in: the loopback of the machine, or the
loopback of a network namespace where `muxio bench loss` drops packets (loss.py). The
result is one JSON line on stdout, so the orchestrator can run each measurement in the
namespace with `ip netns exec`.

Workloads. *pingpong*: the client writes `size` bytes, waits until they are echoed whole,
records the round-trip time, and writes the next, `messages` times or until `cap` seconds
passed (then `done` < `messages`). *bulk*: the client writes `nbytes` as fast as the
transport accepts them (respecting pause_writing); the server counts them and answers one
byte when it has them all; goodput = nbytes / (answer time - first write).

Kinds. `tcp` and `kcp` are muxio's transports on a muxio loop (`--backend`, default
auto), KCP with a named profile. `ckcp` is the C reference (the `siokcp` package wrapping
ikcp.c) on both ends, driven the way muxio drives its own core: event by event, `flush`
after `send` and after `input`, and otherwise woken at the time `check()` names. It runs in
message mode with the profile's settings, as muxio's KCP does.

The client also reports the datagrams it sent and received (KCP kinds), so datagrams per
round trip can be read without a packet counter.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports import tcp
from muxio.transports.kcp import transport as kcp
from muxio.transports.kcp.core import PROFILES, KcpProfile

KINDS = ("tcp", "kcp", "ckcp")
WORKLOADS = ("pingpong", "bulk")
DONE = b"k"


@dataclass
class LinkResult:
    kind: str
    profile: str
    workload: str
    messages: int = 0
    done: int = 0
    rtts_ms: list[float] = field(default_factory=list)
    nbytes: int = 0
    seconds: float = 0.0
    datagrams_sent: int = 0
    datagrams_received: int = 0
    error: str | None = None

    @property
    def goodput_mb_s(self) -> float:
        return self.nbytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


# -- server side (a child process) ----------------------------------------------------------


class _EchoServer(Protocol):
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False


class _SinkServer(Protocol):
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.got = 0

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= self.expected:
            self.transport.write(DONE)
            self.got = -(1 << 62)  # answer once

    def eof_received(self) -> bool:
        return False


def serve(kind: str, workload: str, profile: KcpProfile, nbytes: int,  # noqa: PLR0917
          backend: str | None, offload: bool = True) -> None:
    """Serve one workload until stdin closes; the port goes out on stdout first."""
    if kind == "ckcp":
        _serve_ckcp(workload, profile, nbytes)
        return
    with Loop(backend) as loop:
        def factory() -> Protocol:
            return _EchoServer() if workload == "pingpong" else _SinkServer(nbytes)

        server: Any
        if kind == "tcp":
            server = tcp.serve(factory, "127.0.0.1", 0, loop=loop)
        else:
            server = kcp.serve(factory, "127.0.0.1", 0, loop=loop, profile=profile,
                               idle_timeout=600.0, udp_offload=offload)
        print(server.port, flush=True)
        loop.add_reader(sys.stdin.fileno(), loop.stop)
        loop.run_forever()
        server.close()
        if hasattr(server, "abort_clients"):
            server.abort_clients()


def _ckcp_connection(conv: int, sock: socket.socket, address: Any, profile: KcpProfile,
                     counter: list[int]) -> Any:
    import siokcp

    def output(datagram: bytes) -> int:
        counter[0] += 1
        sock.sendto(datagram, address)
        return 0

    connection = siokcp.KCPConnection(conv, output, lambda message: None)
    connection.nodelay(profile.nodelay, profile.interval, profile.resend, profile.nc)
    connection.wndsize(profile.snd_wnd, profile.rcv_wnd)
    if profile.rx_minrto is not None:
        connection.rx_minrto = profile.rx_minrto
    return connection


def _clock_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000) & 0xFFFFFFFF


def _serve_ckcp(workload: str, profile: KcpProfile, nbytes: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    print(sock.getsockname()[1], flush=True)
    start = time.monotonic()
    connection: Any = None
    got = 0
    counter = [0]
    while True:
        timeout = 1.0
        if connection is not None:
            now = _clock_ms(start)
            timeout = max(0, (connection.check(now) - now) & 0xFFFFFFFF) / 1000
        readable, _, _ = select.select([sock, sys.stdin], [], [], timeout)
        if sys.stdin in readable:
            return
        if connection is not None:
            connection.update(_clock_ms(start))
        if sock not in readable:
            continue
        while True:
            try:
                data, address = sock.recvfrom(65535)
            except BlockingIOError:
                break
            if connection is None:
                conv = int.from_bytes(data[:4], "little")
                connection = _ckcp_connection(conv, sock, address, profile, counter)
                connection.update(_clock_ms(start))
            connection.receive_data(data)
            while (message := connection.next_event()) is not None:
                if workload == "pingpong":
                    connection.send(message)
                else:
                    got += len(message)
                    if got >= nbytes:
                        connection.send(DONE)
                        got = -(1 << 62)
            connection.flush()


# -- client side ----------------------------------------------------------------------------


class _PingPongClient(Protocol):
    def __init__(self, loop: Loop, result: LinkResult, size: int, deadline: float) -> None:
        self.loop = loop
        self.result = result
        self.message = os.urandom(size)
        self.deadline = deadline
        self.got = bytearray()
        self.sent_at = 0.0
        self.finished = False
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.got += data
        if len(self.got) < len(self.message):
            return
        if bytes(self.got[:len(self.message)]) != self.message:
            self.result.error = "echo differs from what was sent (out of order or corrupt)"
            self.finished = True
            return
        del self.got[:len(self.message)]
        self.result.rtts_ms.append((time.perf_counter() - self.sent_at) * 1000)
        self.result.done += 1
        if self.result.done >= self.result.messages or self.loop.time() >= self.deadline:
            self.finished = True
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            self.result.error = f"connection lost: {exc!r}"
            self.finished = True


class _BulkClient(Protocol):
    CHUNK = 64 * 1024

    def __init__(self, result: LinkResult) -> None:
        self.result = result
        self.left = result.nbytes
        self.paused = False
        self.started = 0.0
        self.finished = False
        self.transport: Transport | None = None
        self.chunk = os.urandom(self.CHUNK)

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.started = time.perf_counter()
        self._fill()

    def _fill(self) -> None:
        assert self.transport is not None
        while self.left > 0 and not self.paused:
            size = min(self.left, self.CHUNK)
            self.left -= size
            self.transport.write(self.chunk[:size])

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._fill()

    def data_received(self, data: bytes) -> None:
        if DONE in data:
            self.result.seconds = time.perf_counter() - self.started
            self.result.done = 1
            self.finished = True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            self.result.error = f"connection lost: {exc!r}"
            self.finished = True


def _run_muxio_client(kind: str, port: int, result: LinkResult, *, profile: KcpProfile,
                      size: int, cap: float, backend: str | None, offload: bool) -> None:
    with Loop(backend) as loop:
        deadline = loop.time() + cap
        client: _PingPongClient | _BulkClient
        client = (_PingPongClient(loop, result, size, deadline)
                  if result.workload == "pingpong" else _BulkClient(result))
        if kind == "tcp":
            future: Any = tcp.connect(lambda: client, "127.0.0.1", port, loop=loop)
        else:
            future = kcp.connect(lambda: client, "127.0.0.1", port, loop=loop,
                                 profile=profile, idle_timeout=cap + 30,
                                 udp_offload=offload)
        transport, _ = loop.run_until_complete(future, timeout=30)
        try:
            loop.run_until(lambda: client.finished or loop.time() >= deadline + 1,
                           timeout=cap + 5)
        except Exception as exc:  # the cap: report what was done
            result.error = result.error or f"{type(exc).__name__}: {exc}"
        if kind == "kcp":
            stats = transport.get_extra_info("endpoint_statistics")
            if callable(stats):
                counts = stats()
                result.datagrams_sent = counts["datagrams_sent"]
                result.datagrams_received = counts["datagrams_received"]
        transport.abort()
        loop.run_once(0)
        loop.run_once(0)


def _run_ckcp_client(port: int, result: LinkResult, profile: KcpProfile, size: int,
                     cap: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    counter = [0]
    connection = _ckcp_connection(int.from_bytes(os.urandom(4), "little") or 1, sock,
                                  ("127.0.0.1", port), profile, counter)
    start = time.monotonic()
    deadline = start + cap
    connection.update(_clock_ms(start))
    message = os.urandom(size)
    got = bytearray()
    sent_at = time.perf_counter()
    left = result.nbytes
    chunk = os.urandom(16 * 1024)
    if result.workload == "pingpong":
        connection.send(message)
    else:
        sent_at = time.perf_counter()
    connection.flush()
    try:
        while time.monotonic() < deadline:
            if result.workload == "bulk":
                # keep about two windows queued, as a writer paused at a water mark would
                while left > 0 and connection.waitsnd() < 2 * profile.snd_wnd:
                    piece = chunk[:min(left, len(chunk))]
                    left -= len(piece)
                    connection.send(piece)
                connection.flush()
            now = _clock_ms(start)
            timeout = max(0, (connection.check(now) - now) & 0xFFFFFFFF) / 1000
            readable, _, _ = select.select([sock], [], [], timeout)
            connection.update(_clock_ms(start))
            if not readable:
                continue
            while True:
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    break
                except ConnectionRefusedError as exc:
                    result.error = f"connection refused: {exc}"
                    return
                result.datagrams_received += 1
                connection.receive_data(data)
            finished = False
            while (event := connection.next_event()) is not None:
                if result.workload == "bulk":
                    if DONE in event:
                        result.seconds = time.perf_counter() - sent_at
                        result.done = 1
                        finished = True
                    continue
                got += event
                if len(got) >= size:
                    if bytes(got[:size]) != message:
                        result.error = "echo differs from what was sent"
                        return
                    del got[:size]
                    result.rtts_ms.append((time.perf_counter() - sent_at) * 1000)
                    result.done += 1
                    if result.done >= result.messages:
                        finished = True
                    else:
                        sent_at = time.perf_counter()
                        connection.send(message)
            connection.flush()
            if finished:
                return
    finally:
        result.datagrams_sent = counter[0]
        sock.close()


def run(kind: str, workload: str, profile_name: str, *, messages: int = 1000,
        size: int = 100, nbytes: int = 4 << 20, cap: float = 60.0,
        backend: str | None = None, offload: bool = True) -> LinkResult:
    """One measurement: start the server child, run the client here, stop the child."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: choose from {', '.join(KINDS)}")
    profile = PROFILES[profile_name]
    result = LinkResult(kind, profile_name if kind != "tcp" else "-", workload,
                        messages=messages if workload == "pingpong" else 1,
                        nbytes=nbytes if workload == "bulk" else 0)
    argv = [sys.executable, "-m", "muxio.bench.kcp_link", "serve", "--kind", kind,
            "--workload", workload, "--profile", profile_name, "--bytes", str(nbytes)]
    if backend:
        argv += ["--backend", backend]
    if not offload:
        argv.append("--no-offload")
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the {kind} server did not start (said {line!r})")
        port = int(line)
        if kind == "ckcp":
            _run_ckcp_client(port, result, profile, size, cap)
        else:
            _run_muxio_client(kind, port, result, profile=profile, size=size, cap=cap,
                              backend=backend, offload=offload)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m muxio.bench.kcp_link")
    parser.add_argument("mode", choices=("run", "serve"))
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--workload", choices=WORKLOADS, default="pingpong")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="fast")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--bytes", type=int, default=4 << 20)
    parser.add_argument("--cap", type=float, default=60.0)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--no-offload", dest="offload", action="store_false",
                        help="kcp: no UDP GSO/GRO (plain sendto/recvfrom per datagram)")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve(args.kind, args.workload, PROFILES[args.profile], args.bytes, args.backend,
              args.offload)
        return 0
    result = run(args.kind, args.workload, args.profile, messages=args.messages,
                 size=args.size, nbytes=args.bytes, cap=args.cap, backend=args.backend,
                 offload=args.offload)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
