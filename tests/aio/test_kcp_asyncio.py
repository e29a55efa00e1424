"""KCP for asyncio code: asyncio protocols and streams over muxio's KCP transport, and the
asyncio.AbstractServer it comes with (the echo round trips over KCP are in
test_streams_matrix.py)."""

from __future__ import annotations

import asyncio

import pytest

import muxio.aio
from muxio.aio.bridges import StreamBridge
from muxio.aio.kcp import KcpNeedsMuxioLoopError
from muxio.transports.kcp.transport import KcpTransport


def test_kcp_protocols_server_lifecycle_and_serve_forever(backend: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        received = loop.create_future()
        lost = loop.create_future()

        class Upper(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data.upper())  # type: ignore[attr-defined]

        class Client(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                received.set_result(data)

            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(exc)

        server = await muxio.aio.create_kcp_server(Upper, "127.0.0.1", 0)
        assert server.is_serving() and server.get_loop() is loop
        assert server.sockets[0].getsockname()[1] == server.port
        transport, _ = await muxio.aio.create_kcp_connection(Client, "127.0.0.1", server.port)
        assert isinstance(transport, StreamBridge)
        assert isinstance(transport.muxio_transport, KcpTransport)
        assert transport.get_extra_info("transport") == "kcp"
        transport.write(b"over kcp")
        assert await received == b"OVER KCP"
        serving = loop.create_task(server.serve_forever())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already being awaited"):
            await server.serve_forever()
        transport.close()
        assert await lost is None
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert not server.is_serving() and server.sockets == ()
        await server.wait_closed()

    muxio.aio.run(asyncio.wait_for(main(), 30), backend=backend)


def test_kcp_needs_the_muxio_loop() -> None:
    async def main() -> None:
        with pytest.raises(KcpNeedsMuxioLoopError, match="muxio.aio's loop"):
            await muxio.aio.open_kcp_connection("127.0.0.1", 9)

    asyncio.run(main())
