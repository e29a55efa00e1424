"""Limits and timeouts of the HTTP server, in one frozen value shared by every connection."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """What a server accepts and how long it waits. Defaults suit a public server.

    Sizes are in bytes, times in seconds (on the `Scheduler`'s clock).
    """

    max_target_size: int = 8 * 1024
    """Request target (path + query) longer than this: 414."""
    max_head_size: int = 32 * 1024
    """Request line plus header section larger than this: 431."""
    max_headers: int = 100
    """More header fields than this: 431."""
    max_body_size: int = 1024 * 1024
    """Request body larger than this (declared or received): 413."""
    header_timeout: float = 10.0
    """From a request's first byte (or the connection's start) to the end of its head: 408.
    Not extended by trickling bytes, so a slowloris client is cut off on time."""
    keepalive_timeout: float = 5.0
    """Idle time allowed between requests on a kept-alive connection before it is closed."""
    body_timeout: float = 30.0
    """Longest pause between two pieces of a request body: 408."""
    linger_timeout: float = 2.0
    """After an error response, how long unread request bytes are drained (so that the
    client reads the response instead of a reset) before the connection is dropped."""
    server_name: str = "muxio"
    """Value of the Server header."""

    def __post_init__(self) -> None:
        for name in ("max_target_size", "max_head_size", "max_headers", "max_body_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"HttpConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("header_timeout", "keepalive_timeout", "body_timeout", "linger_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"HttpConfig.{name} must be > 0 seconds, "
                                 f"got {getattr(self, name)}")
        if not self.server_name.isprintable() or not self.server_name.isascii():
            raise ValueError(f"HttpConfig.server_name must be printable ASCII, "
                             f"got {self.server_name!r}")
