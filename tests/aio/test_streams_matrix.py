"""The same asyncio-streams programs on every backend (and stream transport): an echo
server (many clients at once, messages from 1 byte to 1 MB, half-close) and HTTP/1.1 (an
asyncio-streams server fetched by curl and by a pipelining streams client; muxio's own
HTTP handler hosted through `loop.create_server`)."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import muxio.aio
from muxio.handlers.http import hello_app, http_protocol_factory
from tests.tools import require_tool

T = TypeVar("T")
TIMEOUT = 60.0
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(backend: str, coroutine: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(TIMEOUT):
            return await coroutine

    return muxio.aio.run(bounded(), backend=backend)


class Served:
    """A streams server on TCP or KCP that knows when its last connection is gone."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.open = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()
            self.open -= 1

    async def start(self, transport: str) -> Served:
        if transport == "tcp":
            server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
        else:
            kcp_server = await muxio.aio.start_kcp_server(self.handle, "127.0.0.1", 0)
            self.port = kcp_server.port
            server = kcp_server
        self.server = server
        return self

    async def connect(self, transport: str) -> tuple[asyncio.StreamReader,
                                                     asyncio.StreamWriter]:
        if transport == "tcp":
            return await asyncio.open_connection("127.0.0.1", self.port)
        return await muxio.aio.open_kcp_connection("127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        while self.open:
            await asyncio.sleep(0.005)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write(b"bye")  # after the client's EOF: the write side is still open
    await writer.drain()


def test_streams_echo_many_clients_all_sizes_and_half_close(backend: str,
                                                            transport: str) -> None:
    sizes = [1, 100, 65536, 1_000_000] if transport == "tcp" else [1, 100, 65536, 200_000]
    clients = 20 if transport == "tcp" else 5

    async def client(served: Served, seed: int) -> str:
        reader, writer = await served.connect(transport)
        digest = hashlib.sha256()
        for size in sizes:
            message = bytes((seed + i) % 251 for i in range(min(size, 251))) * (size // 251 + 1)
            message = message[:size]
            writer.write(message)
            await writer.drain()
            echoed = await reader.readexactly(size)
            assert echoed == message
            digest.update(echoed)
        writer.write_eof()
        assert await reader.read() == b"bye"  # the server answered our EOF, then closed
        writer.close()
        await writer.wait_closed()
        return digest.hexdigest()

    async def main() -> int:
        served = await Served(echo).start(transport)
        digests = await asyncio.gather(*(client(served, seed) for seed in range(clients)))
        await served.stop()
        return len(set(digests))

    assert run(backend, main()) == clients


async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A small HTTP/1.1 server written with asyncio streams (keep-alive, bodies)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # the client closed between requests
        request_line, *lines = head.decode("latin-1").split("\r\n")
        _method, target, _version = request_line.split(" ")
        headers = {name.strip().lower(): value.strip()
                   for name, value in (line.split(":", 1) for line in lines if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if target == "/hello":
            payload = b"Hello, World!"
        elif target == "/echo":
            payload = body
        else:
            payload = b"x" * int(target.rsplit("/", 1)[1])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n%b" % (len(payload), payload))
        await writer.drain()
        if headers.get("connection", "").lower() == "close":
            return


async def pipelined_client(port: int, count: int, path: str = "/hello") -> list[bytes]:
    """`count` requests sent at once on one connection; the answers read in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
        writer.write(request * count)
        bodies = []
        for _ in range(count):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            bodies.append(await reader.readexactly(length))
        return bodies
    finally:
        writer.close()
        await writer.wait_closed()


async def curl(*args: str) -> bytes:
    """curl as a child process of the loop (awaited through its pidfd)."""
    process = await asyncio.create_subprocess_exec(
        require_tool("curl", "curl"), "--silent", "--show-error", "--http1.1", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out


def test_http_over_asyncio_streams_with_curl_and_a_pipelining_client(backend: str) -> None:
    require_tool("curl", "curl")
    body = bytes(range(256)) * 4096  # 1 MiB

    async def main() -> None:
        served = await Served(http_server).start("tcp")
        base = f"http://127.0.0.1:{served.port}"
        # one curl, three requests on one kept-alive connection, one of them a 1 MiB POST
        out = await curl(f"{base}/hello", f"{base}/bytes/300000", "-o", "/dev/stdout")
        assert out == b"Hello, World!" + b"x" * 300000
        posted = await curl_post(f"{base}/echo", body)
        assert hashlib.sha256(posted).digest() == hashlib.sha256(body).digest()
        assert await pipelined_client(served.port, 50) == [b"Hello, World!"] * 50
        await served.stop()

    run(backend, main())


async def curl_post(url: str, body: bytes) -> bytes:
    process = await asyncio.create_subprocess_exec(
        require_tool("curl", "curl"), "--silent", "--show-error", "--http1.1",
        "--data-binary", "@-", "-H", "Expect:", url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate(body)
    assert process.returncode == 0, err.decode()
    return out


def test_muxio_http_handler_hosted_by_create_server(backend: str) -> None:
    """muxio's own HTTP/1.1 handler (a muxio Protocol) served by asyncio's create_server
    API on muxio.aio: handlers written once run here too."""
    require_tool("curl", "curl")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(http_protocol_factory(hello_app(), loop),
                                          "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        out = await curl(*[f"http://127.0.0.1:{port}/"] * 3)
        assert out == b"Hello, World!\n" * 3
        assert await pipelined_client(port, 20, "/") == [b"Hello, World!\n"] * 20
        server.close()
        await server.wait_closed()
        while server._active_count:  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)

    run(backend, main())


if sys.version_info < (3, 11):  # pragma: no cover
    raise ImportError("these tests use asyncio.timeout (Python 3.11+)")
