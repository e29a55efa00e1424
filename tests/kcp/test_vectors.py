"""The test vectors of the KCP protocol (docs/kcp.md, "The KCP protocol", section 9, and
more), on our core and - when siokcp is installed - on the C reference too, so the vectors
themselves are checked."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from muxio.transports.kcp.core import (
    DEFAULT,
    EXTREME,
    FAST,
    NORMAL,
    PROFILES,
    TURBO,
    Kcp,
    KcpError,
    KcpProfile,
    getconv,
)
from tests.kcp.harness import HEADER, CEnd, End, PyEnd, segments

Factory = Callable[[int], End]


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.fixture(params=["py", "c"])
def make(request: pytest.FixtureRequest) -> Factory:
    def factory(conv: int) -> End:
        if request.param == "py":
            return PyEnd(conv)
        return CEnd(request.getfixturevalue("siokcp_module"), conv)
    return factory


HELLO_PUSH = hexbytes("04030201 51 00 2000 64000000 00000000 00000000 05000000 68656c6c6f")


def test_vector1_push_is_acked(make: Factory) -> None:
    end = make(0x01020304)
    assert end.input(HELLO_PUSH) == 0
    end.update(0)
    assert end.drain() == [hexbytes("04030201 52 00 7f00 64000000 00000000 01000000 00000000")]


def test_vector2_first_flush_moves_nothing(make: Factory) -> None:
    end = make(7)
    assert end.send(b"abc") == 3
    end.update(5000)
    assert end.drain() == []
    end.update(5100)
    assert end.drain() == [
        hexbytes("07000000 51 00 8000 ec130000 00000000 00000000 03000000 616263")]


def test_vector3_wask_is_answered_with_wins(make: Factory) -> None:
    end = make(0x01020304)
    end.input(HELLO_PUSH)
    end.update(0)
    end.drain()
    assert end.recv() == b"hello"
    assert end.input(HEADER.pack(0x01020304, 83, 0, 0, 0, 0, 0, 0)) == 0
    end.update(100)
    assert end.drain() == [hexbytes("04030201 54 00 8000 00000000 00000000 01000000 00000000")]


def test_vector4_input_error_codes(make: Factory) -> None:
    end = make(0x01020304)
    assert end.input(HEADER.pack(0x01020305, 81, 0, 32, 0, 0, 0, 0)) == -1
    assert end.input(HELLO_PUSH[:23]) == -1
    assert end.input(b"") == -1
    assert end.input(HEADER.pack(0x01020304, 81, 0, 32, 0, 0, 0, 6) + b"hello") == -2
    assert end.input(HEADER.pack(0x01020304, 99, 0, 32, 0, 0, 0, 0)) == -3
    # a valid segment followed by a bad one: the first stays processed
    assert end.input(HELLO_PUSH + HEADER.pack(0x01020304, 99, 0, 32, 0, 1, 0, 0)) == -3
    assert end.get("rcv_nxt") == 1
    # a short tail (< 24 bytes) after a valid segment is ignored
    assert end.input(HEADER.pack(0x01020304, 84, 0, 77, 0, 0, 0, 0) + b"tail") == 0
    assert end.get("rmt_wnd") == 77


def test_vector5_fragmentation(make: Factory) -> None:
    end = make(1)
    end.nodelay(0, 10, 0, 1)
    assert end.send(bytes(3000)) == 3000
    end.update(0)
    pushes = [(h[2], h[7]) for d in end.drain() for h in segments(d)]
    assert pushes == [(2, 1376), (1, 1376), (0, 248)]
    assert end.send(bytes(127 * 1376)) == 127 * 1376
    assert end.send(bytes(127 * 1376 + 1)) == -2


def test_vector6_datagram_packing(make: Factory) -> None:
    end = make(1)
    end.nodelay(0, 100, 0, 1)
    end.send(bytes(9))
    end.send(bytes(5120))
    end.update(0)
    datagrams = end.drain()
    assert [len(d) for d in datagrams] == [33, 1400, 1400, 1400, 1016]
    headers = [h for d in datagrams for h in segments(d)]
    assert [h[5] for h in headers] == [0, 1, 2, 3, 4]
    assert [h[2] for h in headers] == [0, 3, 2, 1, 0]


@pytest.mark.parametrize(("nodelay", "expected"), [
    (0, [10, 240, 640, 1440, 3040]),
    (1, [10, 210, 510, 960, 1640, 2660]),
    (2, [10, 210, 510, 910, 1410, 2010, 2710]),
])
def test_vector7_rto_backoff(make: Factory, nodelay: int, expected: list[int]) -> None:
    end = make(1)
    end.nodelay(nodelay, 10, 0, 0)
    end.send(b"x")
    times = []
    for now in range(0, expected[-1] + 1):
        end.update(now)
        if end.drain():
            times.append(now)
    assert times == expected


def ack(conv: int, sn: int, ts: int = 0, una: int = 0, wnd: int = 128) -> bytes:
    return HEADER.pack(conv, 82, 0, wnd, ts, sn, una, 0)


@pytest.mark.parametrize("together", [False, True])
def test_vector8_fast_retransmit(make: Factory, together: bool) -> None:
    end = make(1)
    end.nodelay(1, 10, 2, 1)
    for i in range(5):
        end.send(bytes([i]))
    end.update(0)
    assert [h[5] for d in end.drain() for h in segments(d)] == [0, 1, 2, 3, 4]
    end.update(5)
    if together:
        assert end.input(ack(1, 1) + ack(1, 2)) == 0
    else:
        assert end.input(ack(1, 1)) == 0
        assert end.input(ack(1, 2)) == 0
    end.update(10)
    resent = [h[5] for d in end.drain() for h in segments(d) if h[1] == 81]
    if together:
        assert resent == []
    else:
        assert resent == [0]
        assert end.get("cwnd") == 4
        assert end.get("ssthresh") == 2


def test_vector9_window_probe_timeline(make: Factory) -> None:
    end = make(1)
    end.update(0)
    assert end.input(HEADER.pack(1, 84, 0, 0, 0, 0, 0, 0)) == 0  # peer window: 0
    times = []
    for now in range(0, 34001, 100):
        end.update(now)
        if any(h[1] == 83 for d in end.drain() for h in segments(d)):
            times.append(now)
    assert times == [7100, 17600, 33400]


def test_vector10_fastack_conserve(make: Factory) -> None:
    end = make(1)
    end.nodelay(1, 10, 1, 1)
    end.send(b"a")
    end.send(b"b")
    end.update(0)
    assert len(end.drain()) == 1
    for now in range(10, 201, 10):
        end.update(now)
    resent = [h[5] for d in end.drain() for h in segments(d) if h[1] == 81]
    assert resent == [0, 1]  # both timed out at t=200
    assert end.input(ack(1, 1, ts=0)) == 0
    end.update(210)
    assert end.drain() == []  # the conserve build ignores an ack older than seg 0's copy


def test_probe_after_acks_reuses_last_ack_fields(make: Factory) -> None:
    """The reference reuses its ACK template for WASK/WINS: a probe flushed after ACKs
    carries the last ACK's ts and sn (not 0)."""
    end = make(1)
    end.update(0)
    assert end.input(HEADER.pack(1, 83, 0, 50, 0, 0, 0, 0)
                     + HEADER.pack(1, 81, 0, 50, 77, 0, 0, 1) + b"x") == 0
    end.flush()
    (datagram,) = end.drain()
    assert [h[1:] for h in segments(datagram)] == [
        (82, 0, 127, 77, 0, 1, 0), (84, 0, 127, 77, 0, 1, 0)]


# -- API of our core only -------------------------------------------------------------------


def test_getconv() -> None:
    assert getconv(HELLO_PUSH) == 0x01020304
    assert getconv(memoryview(b"\x07\x00\x00\x00")) == 7
    with pytest.raises(KcpError):
        getconv(b"abc")


def test_api_misuse_raises_kcp_error() -> None:
    kcp = Kcp(1)
    with pytest.raises(KcpError):
        kcp.setmtu(49)
    with pytest.raises(KcpError):
        Kcp(-1)
    with pytest.raises(KcpError):
        Kcp(2**32)
    with pytest.raises(KcpError):
        KcpProfile("bad", interval=5)
    with pytest.raises(KcpError):
        KcpProfile("bad", mtu=10)
    with pytest.raises(KcpError):
        KcpProfile("bad", snd_wnd=0)
    assert issubclass(KcpError, ValueError)


def test_configuration_calls() -> None:
    kcp = Kcp(1)
    assert (kcp.mtu, kcp.mss, kcp.snd_wnd, kcp.rcv_wnd, kcp.rx_minrto) == (1400, 1376, 32,
                                                                          128, 100)
    kcp.nodelay(1, 3, 2, 1)
    assert (kcp.nodelay_mode, kcp.interval, kcp.fastresend, kcp.nocwnd) == (1, 10, 2, 1)
    assert kcp.rx_minrto == 30
    kcp.nodelay(-1, 9000, -1, -1)
    assert (kcp.nodelay_mode, kcp.interval, kcp.fastresend, kcp.nocwnd) == (1, 5000, 2, 1)
    kcp.nodelay(0, -1, -1, -1)
    assert kcp.rx_minrto == 100
    kcp.wndsize(64, 16)
    assert (kcp.snd_wnd, kcp.rcv_wnd) == (64, 128)
    kcp.wndsize(0, 512)
    assert (kcp.snd_wnd, kcp.rcv_wnd) == (64, 512)
    kcp.setmtu(50)
    assert kcp.mss == 26
    kcp.set_interval(1)
    assert kcp.interval == 10


@pytest.mark.parametrize("profile", [DEFAULT, NORMAL, FAST, EXTREME])
def test_profiles(profile: KcpProfile) -> None:
    kcp = Kcp(5, profile=profile)
    assert kcp.nodelay_mode == profile.nodelay
    assert kcp.interval == profile.interval
    assert kcp.fastresend == profile.resend
    assert kcp.nocwnd == profile.nc
    assert kcp.snd_wnd == profile.snd_wnd
    assert kcp.rcv_wnd == profile.rcv_wnd
    assert kcp.rx_minrto == (profile.rx_minrto if profile.rx_minrto is not None
                             else (30 if profile.nodelay else 100))
    assert PROFILES[profile.name] is profile
    assert PROFILES["turbo"] is TURBO is FAST
    assert (FAST.nodelay, FAST.interval, FAST.resend, FAST.nc) == (1, 10, 2, 1)
    assert (NORMAL.nodelay, NORMAL.interval, NORMAL.resend, NORMAL.nc) == (0, 40, 0, 0)


def test_recv_into_and_peek() -> None:
    a = Kcp(1, profile=FAST)
    b = Kcp(1, profile=FAST)
    a.send(b"x" * 3000)
    a.send(b"tail")
    a.update(0)
    for datagram in a.drain_output():
        assert b.input(datagram) == 0
    assert b.peeksize() == 3000
    small = bytearray(100)
    assert b.recv_into(small) == -3
    big = bytearray(4000)
    assert b.recv_into(big, peek=True) == 3000
    assert b.peeksize() == 3000
    assert b.recv_into(big) == 3000
    assert bytes(big[:3000]) == b"x" * 3000
    assert b.recv() == b"tail"
    assert b.recv() is None
    assert b.recv_into(big) == -1
    assert b.peeksize() == -1


def test_recv_incomplete_message() -> None:
    b = Kcp(1)
    # fragments 1 of a 2-fragment message, in order, but the last one is missing
    assert b.input(HEADER.pack(1, 81, 1, 32, 0, 0, 0, 3) + b"abc") == 0
    assert b.peeksize() == -1
    assert b.recv() is None
    assert b.recv_into(bytearray(10)) == -2
    assert b.input(HEADER.pack(1, 81, 0, 32, 0, 1, 0, 2) + b"de") == 0
    assert b.recv() == b"abcde"


def test_output_callback_and_outbox() -> None:
    seen: list[bytes] = []
    kcp = Kcp(3, seen.append)
    kcp.send(b"hi")
    kcp.update(0)
    kcp.update(100)
    assert len(seen) == 1 and not kcp.outbox
    kcp.set_output(None)
    kcp.input(HEADER.pack(3, 81, 0, 32, 0, 0, 0, 1) + b"z")
    kcp.flush()
    assert len(kcp.outbox) == 1
    assert kcp.drain_output() == [HEADER.pack(3, 82, 0, 127, 0, 0, 1, 0)]
    assert kcp.outbox == []


def test_dead_link_and_state() -> None:
    kcp = Kcp(9)
    kcp.nodelay(1, 10, 0, 1)
    kcp.dead_link = 3
    kcp.send(b"void")
    now = 0
    while not kcp.is_dead:
        kcp.update(now)
        now += 10
        assert now < 100_000
    assert kcp.state == 0xFFFFFFFF
    assert kcp.waitsnd() == 1
    assert "state=0xffffffff" in repr(kcp)


def test_check_schedule() -> None:
    kcp = Kcp(1)
    assert kcp.check(1234) == 1234  # never updated
    kcp.update(0)
    assert kcp.check(0) == 100  # next flush tick
    kcp.nodelay(1, 10, 0, 1)
    kcp.send(b"x")
    kcp.update(100)  # sent: resend at 100 + rto 200
    assert kcp.check(105) == 110
    kcp.set_interval(5000)
    kcp.update(110)
    assert kcp.check(111) == 300  # the retransmission comes before the next tick
    assert kcp.check(300) == 300
    assert kcp.check(2**32 - 1 + 20000) == (2**32 - 1 + 20000) & 0xFFFFFFFF


def test_header_layout() -> None:
    assert HEADER.size == 24
    assert struct.pack("<IBBHIIII", 1, 2, 3, 4, 5, 6, 7, 8) == HEADER.pack(1, 2, 3, 4, 5, 6,
                                                                           7, 8)
