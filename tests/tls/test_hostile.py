"""Hostile and careless TLS peers: a stalled handshake closed at the timeout (fake clock,
real sockets), 200 slow or bad clients while a good one is served, and no fd or memory
growth over many handshakes (a bounded count here; benchmarks/tls_handshakes.py runs
10 000)."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import ssl
import time
from collections.abc import Callable

from muxio.loop import Loop
from muxio.protocols import Protocol
from muxio.testing import FakeClock
from muxio.transports import tls
from tests.http.harness import serve_process
from tests.processes import wait_until
from tests.tls.harness import DEADLINE, Pki
from tests.tls.test_layer import client_hello

BAD_CLIENTS = 200


def spin_until(loop: Loop, condition: Callable[[], bool]) -> None:
    """Run the loop until `condition()`, with a wall-clock deadline (the loop's own clock
    is fake and moves only when told)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"{condition} still false after {DEADLINE} s"
        loop.run_once(0.01)


def test_stalled_handshake_is_closed_at_the_timeout_on_tcp(pki: Pki) -> None:
    """A real TCP client sends half a ClientHello and stops; on the fake clock the server
    keeps it until the handshake timeout and closes it then, with no handler made."""
    made: list[Protocol] = []
    clock = FakeClock(autojump=False)
    with Loop("epoll", clock=clock) as loop:
        server = tls.serve(lambda: made.append(Protocol()) or made[-1], "127.0.0.1", 0,
                           loop=loop, context=pki.server_context(), handshake_timeout=3.0)
        try:
            with socket.create_connection(("127.0.0.1", server.port)) as raw:
                raw.sendall(client_hello(pki)[:40])
                spin_until(loop, lambda: bool(server.sessions))
                for _ in range(10):
                    loop.run_once(0.01)  # the 40 bytes are read: still handshaking
                clock.advance(2.9)
                for _ in range(10):
                    loop.run_once(0.01)
                assert server.handshake_failures == 0 and len(server.sessions) == 1
                clock.advance(0.2)
                spin_until(loop, lambda: server.handshake_failures == 1)
                spin_until(loop, lambda: not server.sessions)
                raw.settimeout(DEADLINE)
                try:
                    assert raw.recv(100) == b""
                except ConnectionResetError:
                    pass  # aborted: a reset is the expected way to learn it
            assert made == [] and server.handshakes == 0
        finally:
            server.shutdown()
            for _ in range(3):
                loop.run_once(0)


def _bad_clients(port: int, hello: bytes) -> list[socket.socket]:
    """BAD_CLIENTS sockets, in four kinds: silent, half a ClientHello then silent,
    random bytes, a plain HTTP request."""
    sockets: list[socket.socket] = []
    for index in range(BAD_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        sockets.append(sock)
        kind = index % 4
        if kind == 1:
            sock.sendall(hello[: len(hello) // 2])
        elif kind == 2:
            sock.sendall(os.urandom(300))
        elif kind == 3:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return sockets


def _wait_all_closed(sockets: list[socket.socket], deadline: float) -> None:
    """Until the server has closed every one (EOF or reset), within the deadline."""
    pending = {sock.fileno(): sock for sock in sockets}
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} bad clients still open"
        readable, _, _ = select.select(list(pending.values()), [], [], 1.0)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                del pending[sock.fileno()]


def _https_get(context: ssl.SSLContext, port: int, requests: int) -> list[bytes]:
    bodies = []
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        for _ in range(requests):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            response = b""
            while not response.endswith(b"Hello, World!\n"):
                chunk = sock.recv(4096)
                assert chunk, f"closed mid-response: {response!r}"
                response += chunk
            bodies.append(response)
    return bodies


def test_a_good_client_is_served_among_200_bad_ones(pki: Pki) -> None:
    argv = ["-m", "muxio", "-v", "serve", "http", "--host", "127.0.0.1", "--port", "0",
            "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
            "--tls-handshake-timeout", "2"]
    context = pki.client_context()
    with serve_process(argv) as (process, port):
        bad = _bad_clients(port, client_hello(pki))
        try:
            for _ in range(10):  # a new handshake each time, and keep-alive inside
                assert len(_https_get(context, port, 5)) == 5
            _wait_all_closed(bad, time.monotonic() + DEADLINE)
            assert len(_https_get(context, port, 1)) == 1
        finally:
            for sock in bad:
                sock.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=DEADLINE) == 0
        assert process.stderr is not None
        log = process.stderr.read()
    assert "Traceback" not in log
    failures = re.findall(r"TLS handshake with .* failed: (.*)", log)
    # Rate-limited: a flood of bad clients does not become a flood of log lines.
    assert 0 < len(failures) < BAD_CLIENTS, log[-3000:]
    assert "http request (plain HTTP sent to a TLS port?)" in failures
    # The silent and stalled clients could only be closed by the handshake timeout:
    # _wait_all_closed saw every one of them closed.


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


HANDSHAKES = 400
RSS_GROWTH_LIMIT = 4 * 1024 * 1024


def test_no_fd_or_memory_growth_over_many_handshakes(pki: Pki) -> None:
    argv = ["-m", "muxio", "serve", "http", "--host", "127.0.0.1", "--port", "0",
            "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    context = pki.client_context()
    with serve_process(argv) as (process, port):
        for _ in range(100):  # warm up: allocator pools, caches, lazily imported code
            _https_get(context, port, 1)
        fds, rss = _fd_count(process.pid), _rss(process.pid)
        for _ in range(HANDSHAKES):
            _https_get(context, port, 1)
        # the server may still be closing the last connection
        wait_until(lambda: _fd_count(process.pid) <= fds,
                   f"the server's fds back to {fds} (now {_fd_count(process.pid)})", DEADLINE)
        growth = _rss(process.pid) - rss
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth} bytes over {HANDSHAKES} handshakes"
