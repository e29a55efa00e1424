"""Host muxio handlers on asyncio (or uvloop): no glue is needed for stream protocols.

muxio's Protocol/Transport API uses asyncio's names, so asyncio calls a muxio Protocol's
callbacks directly and the asyncio transport satisfies `muxio.protocols.Transport`; an
asyncio loop satisfies `muxio.protocols.Scheduler`.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable
from typing import Any

from muxio.protocols import ProtocolFactory, Scheduler

FactoryBuilder = Callable[[Scheduler], ProtocolFactory]


async def _serve(build: FactoryBuilder, host: str, port: int, ready: Callable[[str], None], *,
                 tls: ssl.SSLContext | None, handshake_timeout: float | None,
                 backlog: int) -> None:
    loop = asyncio.get_running_loop()
    factory: Any = build(loop)
    server = await loop.create_server(factory, host, port, reuse_address=True, ssl=tls,
                                      backlog=backlog,
                                      ssl_handshake_timeout=handshake_timeout if tls else None)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    addresses = ", ".join(f"{sock.getsockname()[0]}:{sock.getsockname()[1]}"
                          for sock in server.sockets)
    ready(addresses)
    await stop.wait()
    server.close()
    await server.wait_closed()


def run(build: FactoryBuilder, host: str, port: int, ready: Callable[[str], None],
        *, use_uvloop: bool = False, tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None, backlog: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM on asyncio's default loop, or on uvloop; over the loop's
    own TLS when `tls` is given (the peer column of `muxio bench ... --tls`). `backlog`
    defaults to asyncio's own (100)."""
    serving = _serve(build, host, port, ready, tls=tls, handshake_timeout=handshake_timeout,
                     backlog=100 if backlog is None else backlog)
    if use_uvloop:
        import uvloop

        uvloop.run(serving)
    else:
        asyncio.run(serving)
