"""Test helpers for muxio users and for muxio's own tests.

- `FakeClock` (clock.py): drive the loop's timers without waiting.
- pairs.py: `StreamPairFactory` (connected protocol pairs over any registered transport),
  `RecordingProtocol` (records every callback).
- plugin.py: the pytest plugin (fixtures `backend`, `transport`, `loop`, `stream_pair`;
  the `muxio_matrix` marker), installed with muxio through the `pytest11` entry point.
- conformance.py: `StreamTransportConformance`, the stream transport contract as tests.
- memory.py: `memory_pair`, an in-memory transport pair; server.py: `LoopThread`.
- matrix.py: the backend and transport lists every matrix is built from.
"""

from muxio.testing.clock import FakeClock

__all__ = ["FakeClock"]
