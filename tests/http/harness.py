"""Shared pieces of the HTTP tests: a server in a loop thread, a blocking raw client, a
test app, and the sans-I/O drivers (feed bytes in any split, collect events)."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from muxio.handlers.http import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    App,
    Data,
    HttpConfig,
    HttpError,
    Request,
    Response,
    Router,
    ServerConnection,
    hello_app,
    http_protocol_factory,
)
from muxio.testing.server import LoopThread
from muxio.transports import tcp
from tests.processes import stop

DEADLINE = 30.0
"""Longest any single wait in these tests may take before it counts as a failure."""
REPO = Path(__file__).resolve().parents[2]


# -- sans-I/O drivers ----------------------------------------------------------------------


def splits(data: bytes, sizes: Iterable[int]) -> Iterator[bytes]:
    """`data` cut into pieces of the given sizes (cycled), the last piece what is left."""
    sizes = list(sizes)
    offset = 0
    index = 0
    while offset < len(data):
        size = max(1, sizes[index % len(sizes)])
        yield data[offset:offset + size]
        offset += size
        index += 1


def drain(conn: ServerConnection, respond: Callable[[Request], Response] | None = None,
          now: float = 0.0) -> list[object]:
    """Pull every event the core has; answer each complete request with `respond` (so
    pipelined requests are released). Events are returned with Data pieces merged; an
    HttpError ends the list (as the exception object)."""
    events: list[object] = []
    while True:
        try:
            event = conn.next_event()
        except HttpError as error:
            events.append(error)
            return events
        if event is NEED_DATA or event is PAUSED:
            return events
        if isinstance(event, Data) and events and isinstance(events[-1], Data):
            events[-1] = Data(events[-1].data + event.data)  # type: ignore[attr-defined]
        else:
            events.append(event)
        current = conn.current_request
        if event is END_OF_MESSAGE and respond is not None and current is not None:
            conn.respond(respond(current), now)
        if event is CONNECTION_CLOSED:
            return events


def feed_all(data: bytes, pieces: Iterable[bytes], config: HttpConfig | None = None,
             respond: Callable[[Request], Response] | None = None,
             eof: bool = False) -> list[object]:
    """Feed the pieces one by one, draining after each; the events in order."""
    conn = ServerConnection(config)
    events: list[object] = []
    for piece in pieces:
        conn.receive_data(piece)
        events.extend(drain(conn, respond))
    if eof:
        conn.receive_data(b"")
        events.extend(drain(conn, respond))
    # merge Data pieces that arrived in different feeds
    merged: list[object] = []
    for event in events:
        if isinstance(event, Data) and merged and isinstance(merged[-1], Data):
            merged[-1] = Data(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def describe(events: list[object]) -> list[object]:
    """Events as comparable plain values."""
    out: list[object] = []
    for event in events:
        if isinstance(event, Request):
            out.append(("request", event.method, event.target, event.http_version,
                        tuple(event.raw_headers), event.keep_alive, event.expect_continue))
        elif isinstance(event, Data):
            out.append(("data", event.data))
        elif isinstance(event, HttpError):
            out.append(("error", type(event).__name__, event.status_hint))
        else:
            out.append(repr(event))
    return out



# -- a raw blocking client -----------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class ServerClosedError(ConnectionError):
    """The server closed the connection before a complete response."""


class Client:
    """A blocking HTTP client on one socket, reading responses from a shared buffer (so
    pipelined responses are read one after the other). Every wait has a deadline."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = DEADLINE) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buffer = bytearray()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str = "GET", path: str = "/", *,
                headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                version: str = "1.1", host: bool = True) -> RawResponse:
        self.send(build_request(method, path, headers=headers, body=body, version=version,
                                host=host))
        return self.read_response(head_only=method == "HEAD")

    def _fill(self) -> bool:
        data = self.sock.recv(256 * 1024)
        if not data:
            return False
        self.buffer += data
        return True

    def _take_line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 2]
                return line
            if not self._fill():
                raise ServerClosedError(f"closed mid-line; have {bytes(self.buffer)!r}")

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ServerClosedError(f"closed with {len(self.buffer)} of {size} bytes")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_response(self, head_only: bool = False) -> RawResponse:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ServerClosedError(f"closed before a response head; have "
                                        f"{bytes(self.buffer)!r}")
        end = self.buffer.index(b"\r\n\r\n")
        raw_head = bytes(self.buffer[:end + 4])
        del self.buffer[:end + 4]
        status_line, *lines = raw_head[:-4].decode("latin-1").split("\r\n")
        version, status, reason = [*status_line.split(" ", 2), ""][:3]
        assert version == "HTTP/1.1", status_line
        headers = [(name.strip(), value.strip())
                   for name, _, value in (line.partition(":") for line in lines)]
        response = RawResponse(int(status), reason, headers, b"", raw_head)
        code = response.status
        if head_only or code < 200 or code in (204, 304):
            return response
        if (response.header("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self._take_line().split(b";")[0], 16)
                if size == 0:
                    break
                chunks.append(self._take(size))
                assert self._take(2) == b"\r\n"
            while line := self._take_line():
                name, _, value = line.decode("latin-1").partition(":")
                response.trailers.append((name.strip(), value.strip()))
            response.body = b"".join(chunks)
        elif response.header("Content-Length") is not None:
            response.body = self._take(int(response.header("Content-Length") or 0))
        else:
            response.body = self.read_until_closed()
        return response

    def read_until_closed(self) -> bytes:
        """Everything up to EOF (a reset counts as EOF: the server dropped us)."""
        while True:
            try:
                if not self._fill():
                    break
            except ConnectionResetError:
                break
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def is_closed_by_server(self) -> bool:
        """True if the server closes the connection (EOF or reset) within the deadline."""
        return self.read_until_closed() == b""


def build_request(method: str = "GET", path: str = "/", *,
                  headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                  version: str = "1.1", host: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/{version}"]
    names = {name.lower() for name, _ in headers}
    if host and "host" not in names:
        lines.append("Host: test")
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    readable, _, _ = select.select([sock], [], [], timeout)
    return bool(readable)


# -- a test app ----------------------------------------------------------------------------


def echo_body(request: Request) -> Response:
    digest = hashlib.sha256(request.body).hexdigest()
    return Response(200, (("Content-Type", "application/octet-stream"),
                          ("X-Body-Length", str(len(request.body))),
                          ("X-Body-SHA256", digest)), request.body)


def echo_path(request: Request) -> Response:
    return Response.text(f"{request.method} {request.path}?{request.query}")


def echo_request(request: Request) -> Response:
    return Response(200, (("Content-Type", "application/json"),), json.dumps({
        "method": request.method, "path": request.path, "query": request.query,
        "version": request.http_version, "headers": list(request.headers),
        "body_sha256": hashlib.sha256(request.body).hexdigest(),
        "body_length": len(request.body)}).encode())


def stream(request: Request) -> Response:
    """GET /stream?SIZE: SIZE bytes of a known pattern, chunked, in 10 KiB pieces."""
    size = int(request.query or "0")

    def pieces() -> Iterator[bytes]:
        sent = 0
        while sent < size:
            piece = pattern(sent, min(10_240, size - sent))
            sent += len(piece)
            yield piece

    return Response(200, (("Content-Type", "application/octet-stream"),), pieces())


def pattern(offset: int, size: int) -> bytes:
    """Bytes whose value depends on their offset (reordering or loss shows up)."""
    return bytes((offset + index) * 7 % 251 for index in range(size))


def boom(request: Request) -> Response:
    raise RuntimeError("the test app fails on purpose")


def make_app() -> Router:
    router = hello_app()
    router.add("/echo", echo_body, ("POST", "PUT"))
    router.add("/p/", echo_path, ("GET",), prefix=True)
    router.add("/request", echo_request, ("GET", "POST"))
    router.add("/stream", stream, ("GET",))
    router.add("/boom", boom, ("GET",))
    return router


# -- a server in a loop thread ----------------------------------------------------------------


@dataclass
class Server:
    runner: LoopThread
    server: tcp.TcpServer
    port: int

    def connections(self) -> int:
        return self.runner.call(lambda loop: len(self.server.connections))

    def wait_connections(self, wanted: int, timeout: float = DEADLINE) -> int:
        """Wait (polling the loop thread, with a deadline) until `wanted` are open."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.connections()
            if count == wanted or time.monotonic() > deadline:
                return count
            self.runner.drain(1)


@contextmanager
def serving(backend: str, app: App | None = None, config: HttpConfig | None = None,
            host: str = "127.0.0.1") -> Iterator[Server]:
    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: tcp.serve(
            http_protocol_factory(app or make_app(), loop, config), host, 0, loop=loop))

        def shut(loop: object) -> None:
            server.close()
            server.abort_clients()

        runner.on_close(shut)
        yield Server(runner, server, server.port)


# -- a server in a subprocess ---------------------------------------------------------------


@contextmanager
def serve_process(argv: list[str], cwd: Path = REPO) -> Iterator[tuple[subprocess.Popen[str],
                                                                        int]]:
    """`python -m muxio serve http ...` (or adapters) started and stopped; yields the
    process and the port it printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    process = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "serving" not in line:
            process.kill()
            _, err = process.communicate(timeout=DEADLINE)
            raise AssertionError(f"server did not start: {line!r} {err[-2000:]}")
        port = int(line.split("127.0.0.1:")[1].split()[0].rstrip(","))
        yield process, port
    finally:
        stop(process)
