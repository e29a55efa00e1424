"""Stream transports by name: what the handler matrix runs every handler over.

A new transport joins every handler's tests by one entry here (see muxio.testing.matrix).
Each entry gives `serve(protocol_factory, host, port, *, loop)` returning a server with
`port`, `connections`, `close()`, `close_clients()`, and `connect(protocol_factory, host,
port, *, loop)` returning a Future of (transport, protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from muxio.transports import tcp
from muxio.transports.kcp import transport as kcp


@dataclass(frozen=True)
class StreamTransportSpec:
    name: str
    serve: Callable[..., Any]
    connect: Callable[..., Any]
    description: str


STREAM_TRANSPORTS: dict[str, StreamTransportSpec] = {
    "tcp": StreamTransportSpec("tcp", tcp.serve, tcp.connect, "TCP over IPv4/IPv6"),
    "kcp": StreamTransportSpec("kcp", kcp.serve, kcp.connect,
                               "KCP (ikcp-compatible ARQ) over UDP, many sessions per port"),
}


def stream_transport(name: str) -> StreamTransportSpec:
    try:
        return STREAM_TRANSPORTS[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a stream transport; available: "
                         f"{', '.join(STREAM_TRANSPORTS)}") from None
