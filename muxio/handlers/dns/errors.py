"""Exceptions of the DNS handlers (server zones and resolver), in one place.

They derive from plain `Exception` subclasses (the handler layer imports only the
handler API); the service and CLI wiring map them to `muxio.errors.ConfigError`.
"""

from __future__ import annotations


class DnsError(Exception):
    """Base class of every error the DNS server and resolver raise on purpose."""


class ZoneError(DnsError):
    """A zone file could not be loaded: missing, unreadable, a syntax error, no SOA, or
    two files for the same zone. The message names the file (and line when known)."""


class ServerAddressError(DnsError, ValueError):
    """A resolver server address that is not an IP literal with an optional port."""


class DnsTimeoutError(DnsError, TimeoutError):
    """No server answered a query within the allotted tries."""


class ResolverClosedError(DnsError):
    """The resolver was closed; queries still pending fail with this."""
