"""C10K and beyond: one `muxio serve echo` process on epoll holds 15 000 idle TCP
connections and keeps serving, new connections and the idle ones alike.

The idle side is muxio.bench.idle_holder (the process `muxio bench scale` uses). Both it
and `muxio serve` raise their own soft open-file limit to the hard one (muxio.cli.limits).
The hard limit on the reference host is 20 000 per process; below what 15 000 connections
need the test is skipped, saying so."""

from __future__ import annotations

import resource
import socket

import pytest

from muxio.bench.runner import ServerProcess, descendants, free_port, muxio_target
from muxio.bench.scale import FD_MARGIN, MUXIO_STEP, IdleHolders, accepted, hold_accepted
from tests.processes import wait_until

HELD = 15_000
NEEDED = HELD + FD_MARGIN
ACCEPT_DEADLINE = 90.0
"""Seconds for the server to accept them all on a loaded host (a deadline, not a wait)."""


@pytest.fixture
def open_file_limit() -> None:
    """Skip, saying why, where the hard open-file limit cannot take 15 000 connections."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NEEDED:
        pytest.skip(f"the hard open-file limit here is {hard}; {HELD} idle connections "
                    f"need about {NEEDED} (raise it with ulimit -Hn)")


def settles_at(server: ServerProcess, count: int, timeout: float = 30.0) -> None:
    """The server's established connections come to `count` within `timeout` (read from
    /proc/net/tcp, which a busy table can make miscount for a moment)."""
    wait_until(lambda: accepted(server) == count,
               f"{count} established connections (now {accepted(server)})", timeout)


def echo_once(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = client.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("open_file_limit")
def test_one_epoll_process_holds_15000_idle_connections_and_keeps_serving() -> None:
    server = ServerProcess(muxio_target("epoll", "echo"), free_port(), None)
    holders = IdleHolders(server.port)
    try:
        assert descendants(server.process.pid) == []  # one process: no workers
        hold_accepted(server, holders, HELD, MUXIO_STEP, timeout=ACCEPT_DEADLINE)
        settles_at(server, HELD)
        payload = bytes(range(256)) * 64
        assert echo_once(server.port, payload) == payload  # a new connection is served
        holders.probe(300)  # ... and so are connections that sat idle (spread over all)
        assert server.process.poll() is None
        settles_at(server, HELD)  # none of the idle ones was dropped meanwhile
    finally:
        holders.close()
        server.stop()
