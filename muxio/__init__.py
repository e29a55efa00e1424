"""muxio: write a protocol handler once, run it on any poller and any transport."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
