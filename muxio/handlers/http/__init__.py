"""HTTP/1.1 for muxio: a sans-I/O core on httptools, a protocol shell, apps.

- `ServerConnection` (core.py): the state machine; bytes in, events out, responses to
  bytes. No sockets, no clocks: unit-testable by feeding bytes.
- `HttpProtocol` / `http_protocol_factory` (protocol.py): the handler any muxio transport
  (or asyncio) runs; timeouts come from a `Scheduler`.
- `Request`, `Response`, `Router` (messages.py, app.py): what applications are written
  against; `hello_app()` and `StaticFiles` are the built-in apps.
- hosting.py: `protocol_factory(scheduler, HttpServiceConfig)` and the options, for every
  host (`muxio serve http`, `python -m adapters --service http`; see `muxio.handlers`).

This package imports only `muxio.protocols` from muxio (plus the stdlib and httptools).
"""

from muxio.handlers.http.app import App, Router, hello_app
from muxio.handlers.http.config import HttpConfig
from muxio.handlers.http.core import DateCache, Ours, Phase, ServerConnection
from muxio.handlers.http.errors import (
    BadRequestError,
    ExpectationFailedError,
    HeaderFieldsTooLargeError,
    HttpError,
    HttpUsageError,
    HttpVersionNotSupportedError,
    IncompleteRequestError,
    MissingHostError,
    NotImplementedTransferCodingError,
    PayloadTooLargeError,
    RequestSmugglingError,
    RequestTimeoutError,
    UriTooLongError,
)
from muxio.handlers.http.events import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    Data,
)
from muxio.handlers.http.hosting import (
    ALPN,
    DESCRIPTION,
    HttpServiceConfig,
    add_arguments,
    config_from,
    protocol_factory,
)
from muxio.handlers.http.messages import Headers, Request, Response
from muxio.handlers.http.protocol import HttpProtocol, http_protocol_factory
from muxio.handlers.http.static import FileStream, StaticFiles

__all__ = [
    "CONNECTION_CLOSED", "END_OF_MESSAGE", "NEED_DATA", "PAUSED",
    "App", "BadRequestError", "Data", "DateCache", "ExpectationFailedError", "FileStream",
    "HeaderFieldsTooLargeError", "Headers", "HttpConfig", "HttpError", "HttpProtocol",
    "HttpUsageError", "HttpVersionNotSupportedError", "IncompleteRequestError",
    "MissingHostError", "NotImplementedTransferCodingError", "Ours", "PayloadTooLargeError",
    "Phase", "Request", "RequestSmugglingError", "RequestTimeoutError", "Response", "Router",
    "ServerConnection", "StaticFiles", "UriTooLongError", "hello_app",
    "http_protocol_factory",
    # hosting shape (muxio.handlers)
    "ALPN", "DESCRIPTION", "HttpServiceConfig", "add_arguments", "config_from", "protocol_factory",
]
