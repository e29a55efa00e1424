"""The cross-backend differential stress test, on every backend x stream transport.

Each seed is a scenario of many interacting connections (muxio.testing.stress); every
backend and transport must match the reference model on it. A new backend or transport
joins by registration alone (the `backend` and `transport` fixtures come from the
registries). Reads are made small and few per wakeup here, so the rare paths (reads
continued from the ready queue, partial sends) run all the time.
"""

from __future__ import annotations

import pytest

from muxio.loop import Loop
from muxio.testing.stress import make_scenario, run_scenario
from muxio.transports import tcp
from muxio.transports.registry import stream_transport

SEEDS = range(3)
"""Seeds per backend x transport in CI: 3 x 24 conversations, plus the two actors."""


@pytest.mark.parametrize("seed", SEEDS)
def test_every_backend_matches_the_model(backend: str, transport: str, seed: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "MAX_READ", 4096)
    monkeypatch.setattr(tcp, "_READS_PER_EDGE", 2)
    spec = stream_transport(transport)
    # KCP in the FAST profile has no congestion control: 24 sessions with full windows
    # would overflow the loopback receive buffers, and a lost reset datagram is not
    # repeated (see docs). Smaller conversations keep the KCP runs loss-free.
    max_bytes = 200_000 if transport == "tcp" else 20_000
    scenario = make_scenario(seed, max_bytes=max_bytes)
    with Loop(backend) as loop:
        result = run_scenario(scenario, loop=loop, serve=spec.serve, connect=spec.connect,
                              transport_name=transport)
    assert result.problems == [], "\n".join(result.problems)
