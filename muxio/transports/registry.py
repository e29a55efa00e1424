"""Stream transports by name: what `muxio.serve`/`muxio.connect`, the CLI services and the
handler matrix look up, so a new transport joins all of them by one entry here.

Each entry gives `serve(protocol_factory, host, port, *, loop, **options)` returning a
server with `port`, `sockets`, `connections`, `close()`, `close_clients()`, and
`connect(protocol_factory, host, port, *, loop, **options)` returning a Future of
(transport, protocol). The keyword-only parameters of those two functions (other than
`loop`) are the transport's options (TCP: `backlog`, `reuse_port`...; KCP: `profile`,
`idle_timeout`...): they are read from the signatures, so they cannot drift from the code,
and an option the chosen transport does not take is refused with the list of those it does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from muxio.errors import TransportOptionError, UnknownTransportError
from muxio.transports import tcp
from muxio.transports.kcp import transport as kcp


def _keyword_options(function: Callable[..., Any]) -> frozenset[str]:
    return frozenset(name for name, parameter in inspect.signature(function).parameters.items()
                     if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "loop")


@dataclass(frozen=True)
class StreamTransportSpec:
    """One stream transport: its name, how to listen and connect, one line about it."""

    name: str
    serve: Callable[..., Any]
    connect: Callable[..., Any]
    description: str

    @property
    def serve_options(self) -> frozenset[str]:
        """Keyword options `serve` takes besides `loop` (e.g. TCP's `backlog`)."""
        return _keyword_options(self.serve)

    @property
    def connect_options(self) -> frozenset[str]:
        """Keyword options `connect` takes besides `loop` (e.g. TCP's `timeout`)."""
        return _keyword_options(self.connect)

    def check_options(self, what: str, options: Mapping[str, object]) -> None:
        """Raise TransportOptionError naming any option `serve`/`connect` does not take."""
        accepted = self.serve_options if what == "serve" else self.connect_options
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise TransportOptionError(
                f"{what}() on transport {self.name!r} takes no option "
                f"{', '.join(unknown)}; its options are: {', '.join(sorted(accepted)) or 'none'}")


STREAM_TRANSPORTS: dict[str, StreamTransportSpec] = {
    "tcp": StreamTransportSpec("tcp", tcp.serve, tcp.connect, "TCP over IPv4/IPv6"),
    "kcp": StreamTransportSpec("kcp", kcp.serve, kcp.connect,
                               "KCP (ikcp-compatible ARQ) over UDP, many sessions per port"),
}


def stream_transport(name: str) -> StreamTransportSpec:
    """The registered transport called `name`; UnknownTransportError lists the others."""
    try:
        return STREAM_TRANSPORTS[name]
    except KeyError:
        raise UnknownTransportError(f"{name!r} is not a stream transport; available: "
                                    f"{', '.join(STREAM_TRANSPORTS)}") from None
