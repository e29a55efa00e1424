"""Errors muxio.aio raises on purpose.

Each is a muxio error *and* the built-in class asyncio code already catches in the same
situation (asyncio raises ValueError for a bad fd, PermissionError when epoll refuses a
regular file), so code written for asyncio's loop keeps working unchanged.
"""

from __future__ import annotations

from muxio.errors import (
    BadFdError,
    FdLimitError,
    PollerError,
    TlsHandshakeError,
    UnsupportedFileError,
)


class TlsHandshakeAbortedError(TlsHandshakeError, ConnectionAbortedError):
    """The TLS handshake did not finish within ssl_handshake_timeout (asyncio raises
    ConnectionAbortedError there)."""


class TlsHandshakeResetError(TlsHandshakeError, ConnectionResetError):
    """The peer closed or reset the connection during the TLS handshake (asyncio raises
    ConnectionResetError there)."""


class InvalidFdError(BadFdError, ValueError):
    """asyncio code passed a negative fd or an object without a usable fileno()."""


class FdOutOfRangeError(FdLimitError, ValueError):
    """The backend cannot watch an fd this high (select: fd >= FD_SETSIZE)."""


class FileNotPollableError(UnsupportedFileError, PermissionError):
    """The backend refuses this kind of file (epoll and a regular file or directory)."""


def as_asyncio_error(exc: PollerError) -> Exception:
    """The error asyncio code expects for a poller refusal, keeping muxio's message."""
    if isinstance(exc, BadFdError):
        return InvalidFdError(str(exc))
    if isinstance(exc, FdLimitError):
        return FdOutOfRangeError(str(exc))
    if isinstance(exc, UnsupportedFileError):
        return FileNotPollableError(str(exc))
    return exc
