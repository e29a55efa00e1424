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

KCP_MAX_BYTES = 20_000
"""KCP in the FAST profile has no congestion control, and one UDP socket serves every
session: 24 conversations of 20 KB (about 1 MB of kernel buffer with overheads) cannot
overflow the server's 8 MiB receive buffer however slow the loop, so the KCP runs are
loss-free. That matters because a lost reset datagram is not repeated (as a lost TCP RST
is not): the model's 'reset' outcome of an abort needs the datagram to arrive."""
SEEDS = range(3)
"""Seeds per backend x transport in CI: 3 x 24 conversations, plus the two actors."""


@pytest.mark.parametrize("seed", SEEDS)
def test_every_backend_matches_the_model(backend: str, transport: str, seed: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "MAX_READ", 4096)
    monkeypatch.setattr(tcp, "_READS_PER_EDGE", 2)
    spec = stream_transport(transport)
    max_bytes = 200_000 if transport == "tcp" else KCP_MAX_BYTES
    scenario = make_scenario(seed, max_bytes=max_bytes)
    with Loop(backend) as loop:
        result = run_scenario(scenario, loop=loop, serve=spec.serve, connect=spec.connect,
                              transport_name=transport)
    assert result.problems == [], "\n".join(result.problems)
