"""Test helpers for muxio users and for muxio's own tests.

- `FakeClock`: drive the loop's timers without waiting.
- (transport helpers are added by the transports layer: in-memory pair, conformance suite)
"""

from muxio.testing.clock import FakeClock

__all__ = ["FakeClock"]
