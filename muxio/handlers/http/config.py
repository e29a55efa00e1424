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
    send_timeout: float = 60.0
    """While a response waits for the client to take it (writing paused, or a close
    waiting for the buffer to drain): this long without the client taking a byte and the
    connection is aborted (nginx's send_timeout). A slow reader that keeps reading is
    never cut."""
    pipeline_depth: int = 16
    """Pipelined requests parsed ahead of the one being answered. The rest of a read waits
    as bytes, and reading is paused until it is used up: a connection holds at most one
    read plus this many parsed requests, whatever the requests' size."""
    responses_per_turn: int = 16
    """Responses made for one connection before the others get their turn (the rest of
    its pipeline continues in the next loop iteration): a client pipelining thousands of
    requests delays another by at most this many responses per connection."""
    server_name: str = "muxio"
    """Value of the Server header."""

    def __post_init__(self) -> None:
        for name in ("max_target_size", "max_head_size", "max_headers", "max_body_size",
                     "pipeline_depth", "responses_per_turn"):
            if getattr(self, name) < 1:
                raise ValueError(f"HttpConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("header_timeout", "keepalive_timeout", "body_timeout", "linger_timeout",
                     "send_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"HttpConfig.{name} must be > 0 seconds, "
                                 f"got {getattr(self, name)}")
        if not self.server_name.isprintable() or not self.server_name.isascii():
            raise ValueError(f"HttpConfig.server_name must be printable ASCII, "
                             f"got {self.server_name!r}")
