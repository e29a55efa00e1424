"""TLS through muxio.aio on every backend: asyncio code with `ssl=` and `start_tls`, over
muxio's TLS layer (muxio/transports/tls) under the asyncio transport.

Streams echo over TLS with a client certificate, start_tls upgrades on TCP and on KCP,
streams with ssl= over KCP, and asyncio's error behaviour: an untrusted certificate
raises the ssl.SSLError asyncio raises, a handshake over `ssl_handshake_timeout`
ConnectionAbortedError, a peer that hangs up mid-handshake ConnectionResetError; the
server keeps serving throughout."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

import muxio.aio
from muxio.aio.bridges import SslBridge
from muxio.errors import TlsHandshakeError
from tests.tls.harness import Pki, make_pki
from tests.tools import require_module

T = TypeVar("T")
TIMEOUT = 60.0
BIG = 1024 * 1024


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_module("trustme", "trustme")
    return make_pki(tmp_path_factory.mktemp("pki"))


def run(backend: str, coroutine: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(TIMEOUT):
            return await coroutine

    return muxio.aio.run(bounded(), backend=backend)


def contexts(pki: Pki, *, client_cert: bool = False) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts as asyncio users make them (the ssl module's own)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.server_cert, pki.server_key)
    client = ssl.create_default_context(cafile=str(pki.ca))
    if client_cert:
        server.load_verify_locations(cafile=str(pki.ca))
        server.verify_mode = ssl.CERT_REQUIRED
        client.load_cert_chain(pki.client_cert, pki.client_key)
    return server, client


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def close_server(server: asyncio.AbstractServer) -> None:
    server.close()
    await server.wait_closed()


def test_streams_echo_over_tls_with_a_client_certificate(backend: str, pki: Pki) -> None:
    server_context, client_context = contexts(pki, client_cert=True)
    payload = os.urandom(BIG)
    client_subjects: list[Any] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_subjects.append(writer.get_extra_info("peercert")["subject"])
        await echo(reader, writer)

    async def main() -> tuple[bytes, bytes, Any, Any, bool]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context,
                                                       server_hostname="localhost")
        writer.write(b"hello")
        small = await reader.readexactly(5)
        writer.write(payload)
        received = hashlib.sha256(await reader.readexactly(BIG)).digest()
        cipher = writer.get_extra_info("cipher")
        subject = writer.get_extra_info("peercert")["subject"]
        is_tls = (isinstance(writer.transport, SslBridge)
                  and isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
                  and writer.get_extra_info("sslcontext") is client_context)
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        return small, received, cipher, subject, is_tls

    small, received, cipher, subject, is_tls = run(backend, main())
    assert small == b"hello" and received == hashlib.sha256(payload).digest()
    assert cipher[1].startswith("TLS") and is_tls
    assert (("commonName", "muxio test client"),) in client_subjects[0]
    assert any(entry[0][0] == "organizationName" for entry in subject)


@pytest.mark.parametrize("over", ["tcp", "kcp"])
def test_start_tls_upgrades_a_plain_connection(backend: str, pki: Pki, over: str) -> None:
    """A STARTTLS-style exchange: plain lines, then both sides upgrade (the server with
    loop.start_tls, the client with StreamWriter.start_tls) and talk TLS."""
    server_context, client_context = contexts(pki)
    upgraded: list[bool] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            await writer.start_tls(server_context)
            upgraded.append(writer.get_extra_info("cipher") is not None)
            data = await reader.readexactly(6)
            writer.write(data[::-1])
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    async def main() -> tuple[bytes, bytes, bytes]:
        if over == "tcp":
            server: asyncio.AbstractServer = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            kcp_server = await muxio.aio.start_kcp_server(handle, "127.0.0.1", 0)
            server = kcp_server
            reader, writer = await muxio.aio.open_kcp_connection("127.0.0.1", kcp_server.port)
        writer.write(b"STARTTLS\n")
        go = await reader.readline()
        await writer.start_tls(client_context, server_hostname="localhost")
        writer.write(b"abcdef")
        answer = await reader.readexactly(6)
        end = await reader.read()
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        return go, answer, end

    assert run(backend, main()) == (b"GO\n", b"fedcba", b"")
    assert upgraded == [True]


def test_an_untrusted_certificate_raises_asyncios_ssl_error(backend: str, pki: Pki) -> None:
    """The client refuses a server certificate from a CA it does not trust with the
    ssl.SSLCertVerificationError asyncio raises; the server's handler never runs for that
    connection, and the server keeps serving a good client."""
    server_context, client_context = contexts(pki)
    untrusting = ssl.create_default_context(cafile=str(pki.rogue_ca))
    handled: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append("connection")
        await echo(reader, writer)

    async def main() -> tuple[ssl.SSLCertVerificationError, bytes]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            await asyncio.open_connection("127.0.0.1", port, ssl=untrusting,
                                          server_hostname="localhost")
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context,
                                                       server_hostname="localhost")
        writer.write(b"still serving")
        answer = await reader.readexactly(13)
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        return refused.value, answer

    error, answer = run(backend, main())
    assert error.verify_message and "certificate verify failed" in str(error)
    assert answer == b"still serving" and handled == ["connection"]


def test_a_wrong_hostname_is_refused(backend: str, pki: Pki) -> None:
    server_context, client_context = contexts(pki)

    async def main() -> ssl.SSLCertVerificationError:
        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            await asyncio.open_connection("127.0.0.1", port, ssl=client_context,
                                          server_hostname="elsewhere.example")
        await close_server(server)
        return refused.value

    assert "elsewhere.example" in run(backend, main()).verify_message


class Silent(asyncio.Protocol):
    """A peer that accepts TCP and never speaks TLS (or hangs up at once)."""

    def __init__(self, hang_up: bool) -> None:
        self.hang_up = hang_up
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.hang_up:
            transport.close()


def test_handshake_timeout_and_a_peer_hanging_up(backend: str, pki: Pki) -> None:
    """As asyncio: ConnectionAbortedError when the handshake outlasts
    ssl_handshake_timeout, ConnectionResetError when the peer closes during it (both
    also muxio's TlsHandshakeError, with the reason)."""
    _, client_context = contexts(pki)
    peers: list[Silent] = []

    async def main() -> tuple[BaseException, BaseException]:
        loop = asyncio.get_running_loop()
        outcomes = []
        for hang_up in (False, True):
            def silent(hang_up: bool = hang_up) -> Silent:
                peers.append(Silent(hang_up))
                return peers[-1]

            server = await loop.create_server(silent, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", port,
                                             ssl=client_context, server_hostname="localhost",
                                             ssl_handshake_timeout=0.2)
            except (ConnectionError, ssl.SSLError) as exc:
                outcomes.append(exc)
            for peer in peers:
                if peer.transport is not None:
                    peer.transport.close()
            await close_server(server)
        return outcomes[0], outcomes[1]

    timed_out, reset = run(backend, main())
    assert isinstance(timed_out, ConnectionAbortedError)
    assert isinstance(timed_out, TlsHandshakeError)
    assert "SSL handshake is taking longer than 0.2 seconds" in str(timed_out)
    assert isinstance(reset, ConnectionResetError) and isinstance(reset, TlsHandshakeError)
    assert "during the handshake" in str(reset)


def test_start_tls_refuses_what_asyncio_refuses(backend: str) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        with pytest.raises(TypeError) as refused:
            await loop.start_tls(writer.transport, writer.transport.get_protocol(),
                                 "not a context")  # type: ignore[arg-type]
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        return str(refused.value)

    assert "ssl.SSLContext" in run(backend, main())


def test_streams_over_tls_over_kcp_with_ssl_argument(backend: str, pki: Pki) -> None:
    """open_kcp_connection / start_kcp_server with ssl=: TLS over KCP for asyncio code in
    one call, with the same refusal as over TCP for an untrusted certificate."""
    server_context, client_context = contexts(pki)
    untrusting = ssl.create_default_context(cafile=str(pki.rogue_ca))
    payload = os.urandom(BIG)
    handled: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append(writer.get_extra_info("cipher")[1])
        await echo(reader, writer)

    async def main() -> tuple[bytes, str, BaseException]:
        server = await muxio.aio.start_kcp_server(handle, "127.0.0.1", 0, ssl=server_context)
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            await muxio.aio.open_kcp_connection("127.0.0.1", server.port, ssl=untrusting,
                                                server_hostname="localhost")
        reader, writer = await muxio.aio.open_kcp_connection(
            "127.0.0.1", server.port, ssl=client_context, server_hostname="localhost")
        writer.write(payload)
        received = hashlib.sha256(await reader.readexactly(BIG)).digest()
        transport_name = writer.get_extra_info("transport")
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        return received, transport_name, refused.value

    received, transport_name, refused = run(backend, main())
    assert received == hashlib.sha256(payload).digest()
    assert transport_name == "tls+kcp" and handled[0].startswith("TLSv1.")
    assert "certificate verify failed" in str(refused)


def _handshake_started(port: int, context: ssl.SSLContext) -> tuple[socket.socket, Any]:
    """A blocking TLS client that stops after the server's first flight: the server has
    accepted the connection and is in the middle of the handshake."""
    sock = socket.create_connection(("127.0.0.1", port))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        session.do_handshake()
    sock.sendall(outgoing.read())
    incoming.write(sock.recv(65536))
    return sock, (session, incoming, outgoing)


def _finish_and_read(sock: socket.socket, state: Any) -> bytes:
    """Complete the handshake, then read until the server's close_notify or EOF."""
    session, incoming, outgoing = state
    with sock:
        while True:
            try:
                session.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536) or b"")
        sock.sendall(outgoing.read())
        received = b""
        while True:
            try:
                piece = session.read(65536)
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    return received
                incoming.write(data)
                continue
            except ssl.SSLZeroReturnError:
                return received
            if not piece:  # the server's close_notify
                return received
            received += piece


def test_a_handshake_in_progress_survives_server_close(backend: str, pki: Pki) -> None:
    """As on asyncio's loop, a server counts a TLS connection from its accept on, so one
    still in its handshake when the server closes completes and is served (and
    wait_closed waits for it where the Python does that)."""
    server_context, client_context = contexts(pki)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"served after close")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        sock, state = await loop.run_in_executor(None, _handshake_started, port,
                                                 client_context)
        server.close()
        received = await loop.run_in_executor(None, _finish_and_read, sock, state)
        await server.wait_closed()
        return received

    assert run(backend, main()) == b"served after close"
