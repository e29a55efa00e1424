"""aiohttp, a library no one here wrote, serving and fetching through muxio.aio on every
backend: a hello page, a streamed 50 MB upload and a streamed 50 MB download (checked by
SHA-256 on both ends), and a WebSocket echo. Server and client share the loop, so every
byte crosses muxio's transports twice."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest

import muxio.aio
from tests.tools import require_module

T = TypeVar("T")
MB = 1024 * 1024
STREAMED = 50 * MB
CHUNK = MB
TIMEOUT = 120.0


def chunks(total: int) -> list[bytes]:
    """`total` bytes in 1 MB chunks; each chunk's first bytes carry its index, so a
    lost, repeated or reordered chunk changes the digest."""
    base = os.urandom(CHUNK)
    return [index.to_bytes(4, "big") + base[4:] for index in range(total // CHUNK)]


def run(backend: str, coroutine: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(TIMEOUT):
            return await coroutine

    return muxio.aio.run(bounded(), backend=backend)


@pytest.fixture(scope="module")
def payload() -> list[bytes]:
    return chunks(STREAMED)


def test_aiohttp_server_and_client(backend: str, payload: list[bytes]) -> None:
    require_module("aiohttp", "aiohttp")
    from aiohttp import ClientSession, WSMsgType, web

    expected = hashlib.sha256(b"".join(payload)).hexdigest()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(256 * 1024):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"sha256": digest.hexdigest(), "size": size})

    async def download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = STREAMED
        await response.prepare(request)
        for chunk in payload:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data.upper())
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        return ws

    async def body() -> AsyncIterator[bytes]:
        for chunk in payload:
            yield chunk

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, muxio.aio.EventLoop) and loop.backend == backend
        app = web.Application(client_max_size=STREAMED + MB)
        app.router.add_get("/", hello)
        app.router.add_post("/upload", upload)
        app.router.add_get("/download", download)
        app.router.add_get("/ws", websocket)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        try:
            async with ClientSession() as session:
                async with session.get(f"{base}/") as response:
                    assert response.status == 200
                    assert await response.text() == "Hello, World!"
                async with session.post(f"{base}/upload", data=body()) as response:
                    assert await response.json() == {"sha256": expected, "size": STREAMED}
                async with session.get(f"{base}/download") as response:
                    digest = hashlib.sha256()
                    async for chunk in response.content.iter_chunked(256 * 1024):
                        digest.update(chunk)
                    assert digest.hexdigest() == expected
                async with session.ws_connect(f"{base}/ws") as ws:
                    for word in ("muxio", "asyncio", "every backend"):
                        await ws.send_str(word)
                        assert (await ws.receive_str()) == word.upper()
                    await ws.send_bytes(b"\x00\x01\x02" * 50_000)
                    assert await ws.receive_bytes() == (b"\x00\x01\x02" * 50_000)[::-1]
                    await ws.close()
        finally:
            await runner.cleanup()

    run(backend, main())


def test_aiohttp_over_https(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """aiohttp's server with an ssl_context and its client with ssl=: HTTPS through
    muxio.aio's TLS (muxio's layer), two requests on one kept-alive TLS connection."""
    require_module("aiohttp", "aiohttp")
    require_module("trustme", "trustme")
    import ssl

    from aiohttp import ClientSession, TCPConnector, web

    from tests.tls.harness import make_pki

    pki = make_pki(tmp_path_factory.mktemp("pki"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.server_cert, pki.server_key)
    client_context = ssl.create_default_context(cafile=str(pki.ca))
    peers: set[Any] = set()

    async def hello(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        cipher = request.transport.get_extra_info("cipher")
        return web.Response(text=f"Hello over {cipher[1]}")

    async def main() -> list[str]:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        port = runner.addresses[0][1]
        texts = []
        try:
            connector = TCPConnector(ssl=client_context, limit=1)
            async with ClientSession(connector=connector) as session:
                for _ in range(2):
                    async with session.get(f"https://localhost:{port}/") as response:
                        assert response.status == 200
                        texts.append(await response.text())
        finally:
            await runner.cleanup()
        return texts

    texts = run(backend, main())
    assert len(texts) == 2 and all(text.startswith("Hello over TLSv1.") for text in texts)
    assert len(peers) == 1  # both requests on one kept-alive TLS connection
