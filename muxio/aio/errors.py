"""Errors muxio.aio raises on purpose.

Each is a muxio error *and* the built-in class asyncio code already catches in the same
situation (asyncio raises ValueError for a bad fd, PermissionError when epoll refuses a
regular file), so code written for asyncio's loop keeps working unchanged.
"""

from __future__ import annotations

from muxio.errors import BadFdError, FdLimitError, MuxioError, PollerError, UnsupportedFileError


class TlsUnavailableError(MuxioError, NotImplementedError):
    """TLS (`ssl=`, `start_tls`) on muxio.aio needs muxio's TLS transport layer
    (muxio/transports/tls.py), which this version of muxio does not have yet."""


TLS_MISSING = (
    "TLS on muxio.aio needs muxio's TLS transport (muxio/transports/tls.py, a layer over "
    "any stream transport), which this muxio does not have yet; until it lands, run TLS "
    "connections on asyncio's own loop or uvloop")


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
