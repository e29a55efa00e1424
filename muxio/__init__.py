"""muxio: write a protocol handler once, run it on any poller and any transport.

A handler is a `Protocol` (asyncio's callback names: `connection_made`, `data_received`,
`eof_received`, `connection_lost`) that writes to the `Transport` it is given. The same
handler runs on every poller backend (select, poll, epoll level- or edge-triggered, any
selectors selector, plug-ins) and every stream transport (TCP, KCP over UDP):

    import muxio

    class Echo(muxio.Protocol):
        def connection_made(self, transport: muxio.Transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    server = muxio.serve(Echo, "localhost", 7007, backend="poll", transport="tcp")
    server.serve_forever()                          # until Ctrl-C, then closes

Clients run on a loop you own:

    with muxio.Loop(backend="epoll") as loop:
        connecting = muxio.connect(MyClient, "127.0.0.1", 7007, loop=loop)
        transport, client = loop.run_until_complete(connecting, timeout=5)

`muxio.backends()` lists the backends (available here or why not). The backend is chosen,
first match wins, by the `backend=` argument, `--backend`, MUXIO_BACKEND, `muxio.toml` or
`[tool.muxio]` in pyproject.toml, else `auto`. Deeper modules stay importable
(`muxio.transports.tcp`, `muxio.pollers`, `muxio.handlers.http`, `muxio.testing`); the
names here are loaded on first use, so `import muxio.protocols` in a handler stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from muxio.api import BackendInfo, Server, backends, connect, create_endpoint, serve
    from muxio.errors import (
        BackendUnavailableError,
        BadFdError,
        ConfigError,
        FdAlreadyRegisteredError,
        FdLimitError,
        FdNotRegisteredError,
        LoopClosedError,
        LoopError,
        LoopRunningError,
        LoopTimeoutError,
        MissingFeatureError,
        MuxioError,
        PollerClosedError,
        PollerError,
        TransportOptionError,
        UnknownBackendError,
        UnknownTransportError,
        UnsupportedFileError,
    )
    from muxio.futures import CancelledError, Future, InvalidStateError
    from muxio.loop import Loop
    from muxio.protocols import (
        DatagramProtocol,
        DatagramTransport,
        Protocol,
        Scheduler,
        Transport,
    )

_EXPORTS: dict[str, str] = {
    # the loop and its results
    "Loop": "muxio.loop", "Future": "muxio.futures",
    # what a handler is written against
    "Protocol": "muxio.protocols", "DatagramProtocol": "muxio.protocols",
    "Transport": "muxio.protocols", "DatagramTransport": "muxio.protocols",
    "Scheduler": "muxio.protocols",
    # serving, connecting, choosing
    "serve": "muxio.api", "connect": "muxio.api", "create_endpoint": "muxio.api",
    "Server": "muxio.api", "backends": "muxio.api", "BackendInfo": "muxio.api",
    # errors
    "MuxioError": "muxio.errors", "ConfigError": "muxio.errors",
    "UnknownBackendError": "muxio.errors", "BackendUnavailableError": "muxio.errors",
    "MissingFeatureError": "muxio.errors", "UnknownTransportError": "muxio.errors",
    "TransportOptionError": "muxio.errors", "PollerError": "muxio.errors",
    "PollerClosedError": "muxio.errors", "FdAlreadyRegisteredError": "muxio.errors",
    "FdNotRegisteredError": "muxio.errors", "BadFdError": "muxio.errors",
    "FdLimitError": "muxio.errors", "UnsupportedFileError": "muxio.errors",
    "LoopError": "muxio.errors", "LoopClosedError": "muxio.errors",
    "LoopRunningError": "muxio.errors", "LoopTimeoutError": "muxio.errors",
    "CancelledError": "muxio.futures", "InvalidStateError": "muxio.futures",
}

__all__ = [
    "__version__",
    "Loop", "Future",
    "Protocol", "DatagramProtocol", "Transport", "DatagramTransport", "Scheduler",
    "serve", "connect", "create_endpoint", "Server", "backends", "BackendInfo",
    "MuxioError", "ConfigError", "UnknownBackendError", "BackendUnavailableError",
    "MissingFeatureError", "UnknownTransportError", "TransportOptionError", "PollerError",
    "PollerClosedError", "FdAlreadyRegisteredError", "FdNotRegisteredError", "BadFdError",
    "FdLimitError", "UnsupportedFileError", "LoopError", "LoopClosedError",
    "LoopRunningError", "LoopTimeoutError", "CancelledError", "InvalidStateError",
]


def __getattr__(name: str) -> object:
    """Load an exported name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'muxio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
