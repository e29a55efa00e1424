"""UDP GSO/GRO on KCP endpoints: used where the kernel offers them, and a socket that
refuses them (at setsockopt, or at the first segmented send) behaves as plain UDP."""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

import pytest

from muxio.handlers.echo import EchoProtocol
from muxio.loop import Loop
from muxio.testing.conformance import RecordingProtocol
from muxio.transports.kcp import offload
from muxio.transports.kcp import transport as kcp

DEADLINE = 20.0
PAYLOAD = os.urandom(300_000)


class RefusingSocket(socket.socket):
    """A UDP socket whose kernel knows neither UDP_SEGMENT nor UDP_GRO; counts sends."""

    sendmsg_calls = 0
    sendto_calls = 0

    def setsockopt(self, level: int, option: int, value: Any, *rest: Any) -> None:
        if level == offload.SOL_UDP and option in (offload.UDP_SEGMENT, offload.UDP_GRO):
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        super().setsockopt(level, option, value, *rest)

    def sendto(self, *args: Any) -> int:  # type: ignore[override]
        RefusingSocket.sendto_calls += 1
        return super().sendto(*args)

    def sendmsg(self, *args: Any) -> int:  # type: ignore[override]
        RefusingSocket.sendmsg_calls += 1
        return super().sendmsg(*args)


class EioOnSegmentSocket(socket.socket):
    """Takes UDP_SEGMENT, then fails every segmented send with EIO (a route whose device
    cannot segment)."""

    def sendmsg(self, *args: Any) -> int:  # type: ignore[override]
        raise OSError(errno.EIO, "Input/output error")


def _round_trip(loop: Loop, port: int) -> dict[str, int]:
    client = RecordingProtocol()
    transport, _ = loop.run_until_complete(
        kcp.connect(lambda: client, "127.0.0.1", port, loop=loop), timeout=DEADLINE)
    transport.write(PAYLOAD)
    loop.run_until(lambda: len(client.received) >= len(PAYLOAD), timeout=DEADLINE)
    assert bytes(client.received) == PAYLOAD
    statistics = transport.get_extra_info("endpoint_statistics")
    transport.abort()
    loop.run_until(lambda: bool(client.lost_with), timeout=DEADLINE)
    stats: dict[str, int] = statistics()
    return stats


def _socket_factory(cls: type[socket.socket]) -> Any:
    def make(family: int, rcvbuf: int) -> socket.socket:
        sock = cls(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock
    return make


@pytest.mark.parametrize("loop_backend", ["epoll", "poll"])
def test_offload_is_used_where_the_kernel_offers_it(loop_backend: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        if not offload.enable_gso(probe) or not offload.enable_gro(probe):
            pytest.skip("this kernel has no UDP GSO/GRO (Linux >= 5.0 has both)")
    with Loop(loop_backend) as loop:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop)
        stats = _round_trip(loop, server.port)
        assert stats["gso"] == 1 and stats["gro"] == 1
        assert stats["gso_sends"] > 0, stats
        server_stats = server.endpoints[0].statistics()
        assert server_stats["gso_sends"] > 0 and server_stats["gro_receives"] > 0
        server.close()
        server.abort_clients()
        loop.run_until(lambda: not server.endpoints[0].sessions, timeout=DEADLINE)
        loop.run_once(0)


@pytest.mark.parametrize("loop_backend", ["epoll", "poll"])
def test_a_socket_refusing_the_options_behaves_as_plain_udp(
        loop_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kcp, "_udp_socket", _socket_factory(RefusingSocket))
    RefusingSocket.sendmsg_calls = RefusingSocket.sendto_calls = 0
    with Loop(loop_backend) as loop:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop)
        stats = _round_trip(loop, server.port)
        server_stats = server.endpoints[0].statistics()
        for counts in (stats, server_stats):
            assert counts["gso"] == counts["gro"] == 0
            assert counts["gso_sends"] == counts["gro_receives"] == 0
        # every datagram went out on its own sendto, as before offload existed
        assert RefusingSocket.sendmsg_calls == 0
        assert RefusingSocket.sendto_calls == (stats["datagrams_sent"]
                                               + server_stats["datagrams_sent"])
        server.close()
        server.abort_clients()
        loop.run_until(lambda: not server.endpoints[0].sessions, timeout=DEADLINE)
        loop.run_once(0)


def test_a_route_that_cannot_segment_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        if not offload.enable_gso(probe):
            pytest.skip("this kernel has no UDP GSO")
    monkeypatch.setattr(kcp, "_udp_socket", _socket_factory(EioOnSegmentSocket))
    with Loop("epoll") as loop:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop)
        stats = _round_trip(loop, server.port)
        assert stats["gso"] == 0 and stats["gso_sends"] == 0  # turned off at the first EIO
        server.close()
        server.abort_clients()
        loop.run_until(lambda: not server.endpoints[0].sessions, timeout=DEADLINE)
        loop.run_once(0)


def test_gso_runs_cut_where_one_send_cannot_carry_more() -> None:
    a, b = ("127.0.0.1", 1), ("127.0.0.1", 2)
    queued = [(b"x" * 24, a), (b"y" * 1400, a), (b"y" * 1400, a), (b"z" * 300, a),
              (b"y" * 1400, a), (b"y" * 1400, b)]
    runs = [(address, [len(d) for d in run]) for address, run in offload.gso_runs(queued)]
    assert runs == [(a, [24]), (a, [1400, 1400, 300]), (a, [1400]), (b, [1400])]
    many = [(b"q" * 1000, a)] * 130
    sizes = [len(run) for _, run in offload.gso_runs(many)]
    assert sum(sizes) == 130 and max(sizes) <= offload.MAX_SEGMENTS
    assert all(len(run) * 1000 <= offload.MAX_GSO_BYTES for _, run in offload.gso_runs(many))
