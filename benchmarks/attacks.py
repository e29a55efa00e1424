"""The long versions of the attacks of issue 13 (HTTP and chat), with figures.

    python benchmarks/attacks.py                                  # every attack, this checkout
    python benchmarks/attacks.py --only http-fairness,chat-drip --scale 0.5
    python benchmarks/attacks.py --checkout before=/tmp/muxio-before --checkout after=.

Each attack starts a fresh server (`muxio serve http --root ...` or `muxio serve chat`) from
each checkout given (`--checkout LABEL=DIR`: that directory's muxio, so a tree exported
from an older commit shows the "before"), pinned to one CPU, and drives the attack from
this process (non-blocking sockets on a selector, pinned to the other CPU) while a *good
client* in a separate process measures what a well-behaved user sees. A sampler reads the
server's /proc every 0.1 s. Reported per attack and checkout:

- good-client latency (p50 / p99 / max, ms) or the time until it was served at all;
- server RSS growth over the attack (peak minus the baseline before it), CPU use (% of one
  CPU over the attack), open fds;
- what the attack was answered with (statuses, frames, bytes accepted, time to exit).

The attacks (the bounded versions are tests/http/test_attacks.py, tests/chat/test_attacks.py):

    http-pipeline-memory  300 connections pipelining 27-byte requests for the hello
                          endpoint, never reading (30 s)
    http-pipeline-responses  50 connections pipelining requests for a 16 KiB file, never
                          reading (15 s)
    http-fairness         100 connections each pipelining 1 MB of requests for the hello
                          endpoint (and reading, 20 s)
    http-slow-read        200 downloads of a 64 MB file that are never read
    http-hostile-headers  2000 requests with Range / If-Modified-Since values that used to raise
    http-emfile           downloads while the server is out of file descriptors
    http-chunk-ext        one chunked upload whose chunk extension never ends (200 MB)
    chat-drip             1100 connections dripping one byte of an unfinished frame every 3 s
                          (server fd limit 1024), a good client connecting at 2 s
    chat-list-flood       300 clients pipelining 200 LISTs each (and reading)
    chat-list-sigterm     500 clients pipelining 200 LISTs each; SIGTERM at 1 s: time to exit
    chat-idle-list        1000 idle clients + one reader pipelining 5000 LISTs
    chat-join-leave       500, 1000, 2000 clients joining at once, then leaving at once
    chat-invalid          100 invalid frames: what the client reads before the end

The machine is usually shared: quote ratios between checkouts of one run, not absolute
figures. This is a measurement, not a test: nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import errno
import math
import multiprocessing
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

from muxio.bench.runner import cpu_sets, free_port, pin, process_cpu_seconds, terminate
from muxio.handlers.chat import (
    Frame,
    FrameDecoder,
    GetList,
    GetTime,
    Hello,
    MessageType,
    encode,
)

REPO = Path(__file__).resolve().parents[1]
TINY_GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # 27 bytes, the request
HOSTILE = [("Range", "bytes=\xb2-"), ("Range", "bytes=" + "9" * 5000 + "-"),
           ("Range", "bytes=0-" + "9" * 5000), ("Range", "bytes=-" + "9" * 5000),
           ("If-Modified-Since", "Sat, 01 Jan 999999999999999999999 00:00:00 GMT"),
           ("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 +999999999999999999999"),
           ("If-Modified-Since", "Sat, 99999999999999999999 Jan 2000 00:00:00 GMT")]


# -- the server under attack -----------------------------------------------------------------


@dataclass
class Checkout:
    label: str
    path: Path

    def supports(self, service: str, flag: str) -> bool:
        """Whether this checkout's `muxio serve SERVICE` knows `flag` (older ones do not)."""
        result = subprocess.run([sys.executable, "-m", "muxio", "serve", service, "--help"],
                                capture_output=True, text=True, cwd=self.path,
                                env=self.env(), check=False)
        return flag in result.stdout

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.path), "PYTHONUNBUFFERED": "1"}


class Server:
    """`muxio serve SERVICE ARGS` from a checkout, pinned, optionally with a lower fd
    limit; its stderr goes to a file (its size is the log volume)."""

    def __init__(self, checkout: Checkout, service: str, args: list[str], *,
                 nofile: int | None = None, cpus: set[int] | None = None) -> None:
        self.port = free_port()
        self.stderr = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        argv = [sys.executable, "-m", "muxio", "serve", service, "--host", "127.0.0.1",
                "--port", str(self.port), "--backend", BACKEND, *args]

        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, cwd=checkout.path, env=checkout.env())
        pin(self.process.pid, cpus)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "serving" not in line:
            self.stop()
            raise RuntimeError(f"the server did not start: {line!r} "
                               f"{Path(self.stderr.name).read_text()[-2000:]}")
        if nofile is not None:  # from now on: the attack meets this limit
            _soft, hard = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (nofile, hard))

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log_bytes(self) -> int:
        return os.path.getsize(self.stderr.name)

    def stop(self) -> float:
        """SIGTERM, then wait; the seconds it took to exit."""
        started = time.perf_counter()
        terminate(self.process, timeout=60)
        took = time.perf_counter() - started
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()
        with suppress(OSError):
            os.unlink(self.stderr.name)
        return took


class Sampler(threading.Thread):
    """Samples the server's RSS, CPU and fds every 0.1 s while an attack runs."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop_event = threading.Event()
        self.baseline = server.rss()
        self.peak = self.baseline
        self.fds_peak = server.fds()
        self.cpu_start = process_cpu_seconds(server.pid)
        self.started = time.perf_counter()
        self.cpu_percent = 0.0

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            try:
                self.peak = max(self.peak, self.server.rss())
                self.fds_peak = max(self.fds_peak, self.server.fds())
            except (FileNotFoundError, ProcessLookupError):
                return

    def finish(self) -> None:
        self.stop_event.set()
        self.join()
        with suppress(FileNotFoundError, ProcessLookupError):
            cpu = process_cpu_seconds(self.server.pid) - self.cpu_start
            self.cpu_percent = 100 * cpu / (time.perf_counter() - self.started)

    def figures(self) -> dict[str, str]:
        return {"RSS growth": f"{(self.peak - self.baseline) / 2**20:.1f} MB",
                "server CPU": f"{self.cpu_percent:.0f} %",
                "fds peak": str(self.fds_peak)}


# -- the attacking side: non-blocking sockets on a selector ---------------------------------


@dataclass(eq=False)
class Peer:
    sock: socket.socket
    out: bytearray = field(default_factory=bytearray)
    refill: Callable[[Peer], bytes] | None = None
    read: bool = True
    keep: bool = False
    """Keep what is read (else only count it)."""
    received: int = 0
    data: bytearray = field(default_factory=bytearray)
    connected: bool = False
    closed: bool = False
    reset: bool = False


class Driver:
    """Many attacking connections on one selector; `run` pumps them for a while."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.peers: list[Peer] = []

    def connect(self, port: int, data: bytes = b"", *, read: bool = True, keep: bool = False,
                rcvbuf: int | None = None,
                refill: Callable[[Peer], bytes] | None = None) -> Peer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, os.strerror(code))
        peer = Peer(sock, bytearray(data), refill, read, keep)
        self.peers.append(peer)
        self.selector.register(sock, self._interest(peer), peer)
        return peer

    def _interest(self, peer: Peer) -> int:
        interest = selectors.EVENT_READ if peer.read else 0
        if not peer.connected or peer.out or peer.refill is not None:
            interest |= selectors.EVENT_WRITE
        return interest or selectors.EVENT_READ

    def send(self, peer: Peer, data: bytes) -> None:
        if peer.closed:
            return
        peer.out += data
        self.selector.modify(peer.sock, self._interest(peer), peer)

    def run(self, seconds: float, until: Callable[[], bool] | None = None,
            tick: Callable[[], None] | None = None) -> float:
        """Pump for `seconds` (or until `until()`); returns the seconds it ran."""
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline and not (until is not None and until()):
            for key, events in self.selector.select(0.01):
                self._ready(key.data, events)
            if tick is not None:
                tick()
        return time.perf_counter() - started

    def _ready(self, peer: Peer, events: int) -> None:
        if peer.closed:
            return
        if events & selectors.EVENT_WRITE:
            peer.connected = True
            if not peer.out and peer.refill is not None:
                peer.out += peer.refill(peer)
            if peer.out:
                try:
                    sent = peer.sock.send(peer.out)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._close(peer, reset=True)
                    return
                del peer.out[:sent]
            self.selector.modify(peer.sock, self._interest(peer), peer)
        if events & selectors.EVENT_READ and peer.read:
            try:
                chunk = peer.sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                self._close(peer, reset=True)
                return
            if not chunk:
                self._close(peer)
                return
            peer.received += len(chunk)
            if peer.keep:
                peer.data += chunk

    def _close(self, peer: Peer, *, reset: bool = False) -> None:
        peer.closed = True
        peer.reset = reset
        with suppress(KeyError, ValueError):
            self.selector.unregister(peer.sock)

    def close(self) -> None:
        for peer in self.peers:
            with suppress(KeyError, ValueError):
                self.selector.unregister(peer.sock)
            peer.sock.close()
        self.selector.close()


# -- the good client, in its own process -------------------------------------------------------


def _http_probe(port: int, path: str, seconds: float, interval: float,  # noqa: PLR0917
                start_after: float, results: Any) -> None:
    """GET `path` every `interval` on one kept-alive connection (a new one if it closes);
    sends back the latencies and the failures."""
    time.sleep(start_after)
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    sock: socket.socket | None = None
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    while time.perf_counter() < deadline:
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            started = time.perf_counter()
            sock.sendall(request)
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buffer += chunk
            head, _, body = buffer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                body += chunk
            latencies.append(time.perf_counter() - started)
        except (OSError, ValueError, IndexError):
            failures += 1
            if sock is not None:
                sock.close()
            sock = None
        time.sleep(interval)
    if sock is not None:
        sock.close()
    results.send((latencies, failures))


def _chat_probe(port: int, seconds: float, interval: float, start_after: float,
                results: Any) -> None:
    """Connects after `start_after`, sends HELLO (the time to HELLO_OK is the first
    figure), then TIME every `interval` (latencies)."""
    time.sleep(start_after)
    decoder = FrameDecoder(1 << 24)
    hello_latency = float("nan")
    latencies: list[float] = []
    failures = 0

    def wait_for(sock: socket.socket, type_code: int, request_id: int) -> None:
        while True:
            frame = decoder.next_frame()
            if isinstance(frame, Frame):
                if frame.type_code == type_code and frame.request_id == request_id:
                    return
                if frame.type_code == MessageType.PING:
                    sock.sendall(bytes([0, 0, 0, 5, MessageType.PONG]) + frame.request_id
                                 .to_bytes(4, "big"))
                continue
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            decoder.feed(chunk)

    try:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(encode(Hello(request_id=1)))
            wait_for(sock, MessageType.HELLO_OK, 1)
            hello_latency = time.perf_counter() - started
            deadline = time.perf_counter() + seconds
            request_id = 2
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                sock.sendall(encode(GetTime(request_id=request_id)))
                wait_for(sock, MessageType.TIME_OK, request_id)
                latencies.append(time.perf_counter() - started)
                request_id += 1
                time.sleep(interval)
    except OSError:
        failures += 1
    results.send((hello_latency, latencies, failures))


class Probe:
    """A good client (`_http_probe` or `_chat_probe`) in its own process, pinned beside
    the attackers; `done()` once it has reported, `result()` waits for the report."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self._receiver, sender = multiprocessing.Pipe(duplex=False)
        self._process = multiprocessing.Process(target=target, args=(*args, sender),
                                                daemon=True)
        self._process.start()
        pin(self._process.pid or 0, CLIENT_CPUS)
        self._result: Any = None

    def done(self) -> bool:
        return self._result is not None or self._receiver.poll()

    def result(self, timeout: float = 120.0) -> Any:
        if self._result is None and self._receiver.poll(timeout):
            self._result = self._receiver.recv()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
        if self._result is None:
            raise RuntimeError("the good client did not report")
        return self._result


def latency_figures(latencies: list[float], failures: int) -> dict[str, str]:
    if not latencies:
        return {"good client": f"never served ({failures} failures)"}
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"good p50": f"{statistics.median(ordered) * 1000:.1f} ms",
            "good p99": f"{p99 * 1000:.1f} ms", "good max": f"{ordered[-1] * 1000:.1f} ms",
            "good served": f"{len(ordered)} ({failures} failures)"}


# -- chat helpers ------------------------------------------------------------------------------


def frames_of(data: bytes | bytearray) -> list[Frame]:
    decoder = FrameDecoder(1 << 24)
    decoder.feed(bytes(data))
    frames = []
    while isinstance(frame := decoder.next_frame(), Frame):
        frames.append(frame)
    return frames


def greet_all(driver: Driver, port: int, count: int, *, keep: bool = False,
              seconds: float = 120) -> list[Peer]:
    hello = encode(Hello(request_id=1))
    peers = [driver.connect(port, hello, keep=True) for _ in range(count)]

    def greeted() -> bool:
        return all(any(f.type_code == MessageType.HELLO_OK for f in frames_of(p.data[:4096]))
                   for p in peers)

    driver.run(seconds, until=greeted)
    if not keep:
        for peer in peers:
            peer.keep = False
            peer.data.clear()
    return peers


# -- the attacks -------------------------------------------------------------------------------

Figures = dict[str, str]


def http_pipeline_memory(checkout: Checkout, scale: float, site: Path) -> Figures:
    server = Server(checkout, "http", [], cpus=SERVER_CPUS)  # the hello endpoint
    driver = Driver()
    try:
        sampler = Sampler(server)
        sampler.start()
        flood = TINY_GET * 2400  # one 64 KiB read
        for _ in range(int(300 * scale)):
            driver.connect(server.port, read=False, rcvbuf=4096, refill=lambda _p: flood)
        # Long enough for the server to have visited every connection once (it answers
        # each until the answers back up, ~1000 requests): the state the issue measured.
        good = Probe(_http_probe, server.port, "/", 25.0, 0.05, 1.0)
        driver.run(30.0)
        sampler.finish()
        return {**latency_figures(*good.result()), **sampler.figures()}
    finally:
        driver.close()
        server.stop()


def http_pipeline_responses(checkout: Checkout, scale: float, site: Path) -> Figures:
    """Like http-pipeline-memory, for a 16 KiB file: a read of pipelined requests for it
    used to be answered in one go, ~1900 responses joined into one 30 MB write."""
    server = Server(checkout, "http", ["--root", str(site)], cpus=SERVER_CPUS)
    driver = Driver()
    try:
        sampler = Sampler(server)
        sampler.start()
        request = b"GET /16k.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        flood = request * (65536 // len(request))
        for _ in range(int(50 * scale)):
            driver.connect(server.port, read=False, rcvbuf=4096, refill=lambda _p: flood)
        good = Probe(_http_probe, server.port, "/index.html", 12.0, 0.05, 1.0)
        driver.run(15.0)
        sampler.finish()
        return {**latency_figures(*good.result()), **sampler.figures()}
    finally:
        driver.close()
        server.stop()


def http_fairness(checkout: Checkout, scale: float, site: Path) -> Figures:
    server = Server(checkout, "http", [], cpus=SERVER_CPUS)  # the hello endpoint
    driver = Driver()
    try:
        sampler = Sampler(server)
        sampler.start()
        flood = TINY_GET * (1_000_000 // len(TINY_GET))
        peers = [driver.connect(server.port, flood) for _ in range(int(100 * scale))]
        good = Probe(_http_probe, server.port, "/", 20.0, 0.02, 0.3)
        took = driver.run(20.5)
        sampler.finish()
        answered = sum(p.received for p in peers)
        return {**latency_figures(*good.result()), **sampler.figures(),
                "flood answered": f"{answered / 2**20:.0f} MB in {took:.1f} s"}
    finally:
        driver.close()
        server.stop()


def http_slow_read(checkout: Checkout, scale: float, site: Path) -> Figures:
    args = ["--root", str(site)]
    if checkout.supports("http", "--send-timeout"):
        args += ["--send-timeout", "5"]
    server = Server(checkout, "http", args, cpus=SERVER_CPUS)
    driver = Driver()
    try:
        sampler = Sampler(server)
        sampler.start()
        request = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(int(200 * scale)):
            driver.connect(server.port, request, read=False, rcvbuf=4096)
        driver.run(2.0)
        held_early = server.fds()
        driver.run(10.0)
        held_late = server.fds()
        sampler.finish()
        return {"server fds at 2 s": str(held_early), "server fds at 12 s": str(held_late),
                "send timeout": "5 s" if "--send-timeout" in args else "(none)",
                **sampler.figures()}
    finally:
        driver.close()
        server.stop()


def http_hostile_headers(checkout: Checkout, scale: float, site: Path) -> Figures:
    server = Server(checkout, "http", ["--root", str(site)], cpus=SERVER_CPUS)
    driver = Driver()
    try:
        count = int(2000 * scale)
        batch = b"".join(
            f"GET /index.html HTTP/1.1\r\nHost: x\r\n{name}: {value}\r\n\r\n"
            .encode("latin-1") for name, value in (HOSTILE * count)[:count])
        log_before = server.log_bytes()
        peer = driver.connect(server.port, batch, keep=True)
        driver.run(60.0, until=lambda: peer.data.count(b"HTTP/1.1 ") >= count or peer.closed)
        statuses: dict[str, int] = {}
        for line in bytes(peer.data).split(b"HTTP/1.1 ")[1:]:
            status = line[:3].decode()
            statuses[status] = statuses.get(status, 0) + 1
        return {"statuses": ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
                "server log": f"{(server.log_bytes() - log_before) / 1024:.0f} KB"}
    finally:
        driver.close()
        server.stop()


def http_emfile(checkout: Checkout, scale: float, site: Path) -> Figures:
    downloads = 30
    # Room for the listener, the poller, stdio and every connection, plus 12 files.
    server = Server(checkout, "http", ["--root", str(site)], nofile=downloads + 24,
                    cpus=SERVER_CPUS)
    driver = Driver()
    try:
        request = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        peers = [driver.connect(server.port, request, keep=True, rcvbuf=4096)
                 for _ in range(downloads)]
        driver.run(10.0, until=lambda: all(b"\r\n\r\n" in p.data or p.closed for p in peers))
        statuses: dict[str, int] = {}
        for peer in peers:
            head = bytes(peer.data[:64])
            status = head[9:12].decode() if head.startswith(b"HTTP/1.1 ") else "none"
            statuses[status] = statuses.get(status, 0) + 1
        return {"statuses": ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))}
    finally:
        driver.close()
        server.stop()


def http_chunk_ext(checkout: Checkout, scale: float, site: Path) -> Figures:
    server = Server(checkout, "http", ["--root", str(site)], cpus=SERVER_CPUS)
    driver = Driver()
    try:
        sampler = Sampler(server)
        sampler.start()
        total = int(200 * 2**20 * scale)
        sent = [0]
        piece = b"e" * 65536

        def refill(peer: Peer) -> bytes:
            if sent[0] >= total:
                peer.refill = None
                return b""
            sent[0] += len(piece)
            return piece

        head = (b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;name=")
        peer = driver.connect(server.port, head, keep=True, refill=refill)
        took = driver.run(120.0, until=lambda: bool(peer.data) or peer.closed)
        sampler.finish()
        answer = bytes(peer.data[:12]).decode("latin-1") or ("reset" if peer.reset else
                                                              "closed")
        return {"answer": answer, "extension bytes sent": f"{sent[0] / 2**20:.1f} MB",
                "took": f"{took:.1f} s", **sampler.figures()}
    finally:
        driver.close()
        server.stop()


def chat_drip(checkout: Checkout, scale: float, site: Path) -> Figures:
    server = Server(checkout, "chat", [], nofile=1024, cpus=SERVER_CPUS)
    driver = Driver()
    try:
        sampler = Sampler(server)
        sampler.start()
        peers = [driver.connect(server.port, b"\x00\x00\x01", read=False)
                 for _ in range(int(1100 * scale))]
        next_drip = [time.perf_counter() + 3.0]

        def drip() -> None:
            if time.perf_counter() >= next_drip[0]:
                next_drip[0] += 3.0
                for peer in peers:
                    driver.send(peer, b"\x00")

        good = Probe(_chat_probe, server.port, 1.0, 0.05, 2.0)
        driver.run(65.0, tick=drip, until=good.done)  # HELLO_OK + 1 s, or its 60 s timeout
        sampler.finish()
        hello, _latencies, _failures = good.result()
        return {"good HELLO_OK after": ("never" if math.isnan(hello) else f"{hello:.2f} s"),
                **sampler.figures()}
    finally:
        driver.close()
        server.stop()


def _list_flood(checkout: Checkout, scale: float, clients: int, lists: int,
                sigterm_at: float | None = None) -> Figures:
    server = Server(checkout, "chat", ["--max-clients", "100000"], cpus=SERVER_CPUS)
    driver = Driver()
    exited = float("nan")
    try:
        peers = greet_all(driver, server.port, int(clients * scale))
        sampler = Sampler(server)
        sampler.start()
        flood = b"".join(encode(GetList(request_id=i)) for i in range(2, 2 + lists))
        for peer in peers:
            driver.send(peer, flood)
        if sigterm_at is not None:
            driver.run(sigterm_at)
            server.process.send_signal(signal.SIGTERM)
            started = time.perf_counter()
            driver.run(60.0, until=lambda: server.process.poll() is not None)
            exited = time.perf_counter() - started
            sampler.finish()
            return {"exit after SIGTERM": f"{exited:.2f} s", **sampler.figures()}
        good = Probe(_chat_probe, server.port, 5.0, 0.02, 0.2)
        driver.run(90.0, until=good.done)
        sampler.finish()
        hello, latencies, failures = good.result()
        answered = sum(p.received for p in peers)
        return {"good HELLO_OK after": f"{hello * 1000:.0f} ms",
                **latency_figures(latencies, failures), **sampler.figures(),
                "LIST answers read": f"{answered / 2**20:.0f} MB"}
    finally:
        driver.close()
        server.stop()


def chat_list_flood(checkout: Checkout, scale: float, site: Path) -> Figures:
    return _list_flood(checkout, scale, 300, 200)


def chat_list_sigterm(checkout: Checkout, scale: float, site: Path) -> Figures:
    return _list_flood(checkout, scale, 500, 200, sigterm_at=1.0)


def chat_idle_list(checkout: Checkout, scale: float, site: Path) -> Figures:
    server = Server(checkout, "chat", ["--max-clients", "100000"], cpus=SERVER_CPUS)
    driver = Driver()
    try:
        greet_all(driver, server.port, int(1000 * scale))
        [reader] = greet_all(driver, server.port, 1)
        sampler = Sampler(server)
        sampler.start()
        good = Probe(_chat_probe, server.port, 8.0, 0.01, 0.0)
        driver.run(1.0)
        driver.send(reader, b"".join(encode(GetList(request_id=i)) for i in range(2, 5002)))
        driver.run(60.0, until=good.done)
        sampler.finish()
        _hello, latencies, failures = good.result()
        return {**latency_figures(latencies, failures), **sampler.figures(),
                "reader got": f"{reader.received / 2**20:.0f} MB for 45 KB of LISTs"}
    finally:
        driver.close()
        server.stop()


def chat_join_leave(checkout: Checkout, scale: float, site: Path) -> Figures:
    figures: Figures = {}
    for size in (500, 1000, 2000):
        figures.update(_join_leave(checkout, int(size * scale)))
    return figures


def _join_leave(checkout: Checkout, count: int) -> Figures:
    server = Server(checkout, "chat", ["--max-clients", "100000"], cpus=SERVER_CPUS)
    driver = Driver()
    try:
        cpu = process_cpu_seconds(server.pid)
        started = time.perf_counter()
        peers = greet_all(driver, server.port, count)
        joined = time.perf_counter() - started
        driver.run(1.0)
        join_cpu = process_cpu_seconds(server.pid) - cpu
        base_fds = server.fds() - count
        cpu = process_cpu_seconds(server.pid)
        started = time.perf_counter()
        for peer in peers:
            peer.sock.shutdown(socket.SHUT_WR)
        driver.run(120.0, until=lambda: server.fds() <= base_fds)
        left = time.perf_counter() - started
        leave_cpu = process_cpu_seconds(server.pid) - cpu
        return {f"{count} join": f"{joined:.2f} s ({join_cpu:.2f} s CPU)",
                f"{count} leave": f"{left:.2f} s ({leave_cpu:.2f} s CPU)"}
    finally:
        driver.close()
        server.stop()


def chat_invalid(checkout: Checkout, scale: float, site: Path) -> Figures:
    server = Server(checkout, "chat", [], cpus=SERVER_CPUS)
    driver = Driver()
    try:
        [peer] = greet_all(driver, server.port, 1, keep=True)
        peer.data.clear()
        unknown = bytes([0, 0, 0, 5, 0x3C, 0, 0, 0, 7])
        driver.send(peer, unknown * 100 + encode(GetTime(request_id=2)) * 50)
        driver.run(10.0, until=lambda: peer.closed)
        frames = frames_of(peer.data)
        errors = sum(f.type_code == MessageType.ERROR for f in frames)
        closing = sum(f.type_code == MessageType.CLOSING for f in frames)
        return {"ERRORs read": str(errors), "CLOSING read": str(closing),
                "ended by": "reset" if peer.reset else ("EOF" if peer.closed else "(open)")}
    finally:
        driver.close()
        server.stop()


ATTACKS: dict[str, Callable[[Checkout, float, Path], Figures]] = {
    "http-pipeline-memory": http_pipeline_memory,
    "http-pipeline-responses": http_pipeline_responses, "http-fairness": http_fairness,
    "http-slow-read": http_slow_read, "http-hostile-headers": http_hostile_headers,
    "http-emfile": http_emfile, "http-chunk-ext": http_chunk_ext, "chat-drip": chat_drip,
    "chat-list-flood": chat_list_flood, "chat-list-sigterm": chat_list_sigterm,
    "chat-idle-list": chat_idle_list, "chat-join-leave": chat_join_leave,
    "chat-invalid": chat_invalid,
}
BACKEND = "epoll"
SERVER_CPUS: set[int] | None = None
CLIENT_CPUS: set[int] | None = None


def make_site(root: Path) -> Path:
    (root / "index.html").write_bytes(b"<p>Hello</p>\n")
    (root / "16k.bin").write_bytes(os.urandom(16384))
    with open(root / "big.bin", "wb") as handle:
        handle.truncate(64 << 20)
    return root


def main(argv: list[str] | None = None) -> int:
    global BACKEND, SERVER_CPUS, CLIENT_CPUS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated attacks (default: all)")
    parser.add_argument("--checkout", action="append", default=[], metavar="LABEL=DIR",
                        help="a muxio tree to attack (repeatable; default: this one)")
    parser.add_argument("--backend", default="epoll")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the connection and request counts (e.g. 0.3)")
    args = parser.parse_args(argv)
    BACKEND = args.backend
    SERVER_CPUS, CLIENT_CPUS = cpu_sets()
    pin(os.getpid(), CLIENT_CPUS)
    names = [name.strip() for name in args.only.split(",") if name.strip()] or list(ATTACKS)
    unknown = [name for name in names if name not in ATTACKS]
    if unknown:
        parser.error(f"unknown attacks {unknown}; known: {', '.join(ATTACKS)}")
    checkouts = [Checkout(*item.split("=", 1)) for item in args.checkout] if args.checkout \
        else [Checkout("this", REPO)]
    for checkout in checkouts:
        checkout.path = Path(checkout.path).resolve()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # many attacking sockets
    print(f"# attacks on {BACKEND}, scale {args.scale}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = make_site(Path(tmp))
        for name in names:
            results: dict[str, Figures] = {}
            for checkout in checkouts:
                try:
                    results[checkout.label] = ATTACKS[name](checkout, args.scale, site)
                except Exception as exc:  # a measurement run: report and go on
                    results[checkout.label] = {"failed": f"{type(exc).__name__}: {exc}"}
            print_table(name, results)
    return 0


def print_table(name: str, results: dict[str, Figures]) -> None:
    rows: list[str] = []
    for figures in results.values():
        rows.extend(key for key in figures if key not in rows)
    labels = list(results)
    width = max(len(row) for row in rows) if rows else 10
    print(f"\n## {name}")
    print(f"| {'':<{width}} | " + " | ".join(labels) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (len(label) + 2) for label in labels)
          + "|")
    for row in rows:
        cells = [results[label].get(row, "") for label in labels]
        print(f"| {row:<{width}} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
