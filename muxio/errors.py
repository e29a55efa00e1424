"""Every exception muxio raises on purpose, in one place.

Each class names a situation a user can act on; messages say what to do next.
"""

from __future__ import annotations


class MuxioError(Exception):
    """Base class of every error muxio raises deliberately."""


# -- configuration and backend choice ------------------------------------------------------


class ConfigError(MuxioError, ValueError):
    """A setting (argument, flag, environment variable or config file) is invalid."""


class UnknownBackendError(ConfigError):
    """A backend name that no registry entry (built-in or plugin) answers to."""


class BackendUnavailableError(MuxioError):
    """A known backend that cannot run here (missing OS facility, failed import...)."""


class MissingFeatureError(BackendUnavailableError):
    """The chosen backend lacks a feature the caller asked for (e.g. edge triggering)."""


class UnknownTransportError(ConfigError):
    """A transport name that the stream transport registry does not list."""


class TransportOptionError(ConfigError):
    """An option the chosen transport does not take (e.g. `backlog` on KCP)."""


# -- pollers -------------------------------------------------------------------------------


class PollerError(MuxioError):
    """Misuse of a poller: wrong fd, wrong state."""


class PollerClosedError(PollerError):
    """The poller was closed; create a new one."""


class FdAlreadyRegisteredError(PollerError):
    """`register` on an fd that is already registered; use `modify` instead."""


class FdNotRegisteredError(PollerError):
    """`modify`/`unregister` on an fd that was never registered (or already unregistered)."""


class BadFdError(PollerError):
    """The file descriptor is closed or invalid."""


class FdLimitError(PollerError):
    """The backend cannot watch this fd (e.g. select and fd >= FD_SETSIZE)."""


class UnsupportedFileError(PollerError):
    """The OS facility refuses this kind of file (e.g. epoll and a regular file)."""


# -- loop ----------------------------------------------------------------------------------


class LoopError(MuxioError):
    """Misuse of the event loop."""


class LoopClosedError(LoopError):
    """The loop was closed; create a new one."""


class LoopRunningError(LoopError):
    """The loop is already running (run calls do not nest)."""


class LoopTimeoutError(LoopError, TimeoutError):
    """`run_until` reached its deadline before its condition became true."""


# -- TLS -----------------------------------------------------------------------------------


class TlsError(MuxioError):
    """A TLS setting or session failed (see the subclasses)."""


class TlsConfigError(TlsError, ConfigError):
    """A certificate, key or CA file is missing, unreadable or not valid PEM; the message
    names the file."""


class TlsHandshakeError(TlsError, ConnectionError):
    """The TLS handshake did not complete: the peer's certificate was refused, the peer
    does not speak TLS (e.g. plain HTTP sent to a TLS port), no common protocol version or
    cipher, or it did not finish within the handshake timeout. `reason` says which;
    `peer` is the peer's address."""

    def __init__(self, message: str, *, reason: str, peer: object = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.peer = peer


class TlsHalfCloseError(TlsError, NotImplementedError):
    """`write_eof()` on a TLS transport: TLS cannot close one direction only here; call
    `close()` when done writing (it sends close_notify), and check `can_write_eof()`."""
