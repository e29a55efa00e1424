"""Differential tests: our core and the C reference (siokcp 0.0.5) in lockstep.

Same configuration, same fake clock, same calls, same inputs: every return value, every
output datagram (byte for byte) and every control field must be identical after every call.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from types import ModuleType

import pytest

from tests.kcp.harness import Duet, End, segments

M32 = 0xFFFFFFFF
MSS = 1376

# (name, nodelay, interval, resend, nc) - the README's presets and the upstream test's
PROFILES = [
    ("default", 0, 100, 0, 0),
    ("normal", 0, 40, 0, 0),
    ("fast", 1, 10, 2, 1),
    ("fast-cwnd", 1, 10, 2, 0),
    ("extreme", 2, 10, 1, 1),
    ("nodelay2-cwnd", 2, 20, 3, 0),
]


def setup_profile(nodelay: int, interval: int, resend: int, nc: int, *,
                  snd: int = 0, rcv: int = 0, stream: bool = False,
                  minrto: int | None = None,
                  fastlimit: int | None = None) -> Callable[[End], None]:
    def setup(end: End) -> None:
        end.nodelay(nodelay, interval, resend, nc)
        end.wndsize(snd, rcv)
        if stream:
            end.set("stream", 1)
        if minrto is not None:
            end.set("rx_minrto", minrto)
        if fastlimit is not None:
            end.set("fastlimit", fastlimit)
    return setup


def payload(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


@pytest.mark.parametrize("profile", PROFILES, ids=[p[0] for p in PROFILES])
@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_profiles_lossy_exchange(siokcp_module: ModuleType,
                                 profile: tuple[str, int, int, int, int], stream: bool) -> None:
    name, nodelay, interval, resend, nc = profile
    rng = random.Random(f"{name}-{stream}")
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(nodelay, interval, resend, nc, stream=stream))
    duet.update()
    sent = {"a": b"", "b": b""}
    for round_ in range(60):
        for side in ("a", "b"):
            if rng.random() < 0.5:
                size = rng.choice([0, 1, 100, MSS - 1, MSS, MSS + 1, 3 * MSS + 7, 9000])
                data = payload(rng, size)
                accepted = duet.send(side, data)
                assert accepted == len(data)
                sent[side] += data
        duet.tick(rng.choice([1, 5, 10, interval, 37]))
        duet.deliver("a", rng, loss=0.2, dup=0.05, reorder=round_ % 3 == 0)
        duet.deliver("b", rng, loss=0.2, dup=0.05, reorder=round_ % 4 == 0,
                     flush=round_ % 2 == 0)
        duet.recv_all("a")
        duet.recv_all("b")
        if round_ % 7 == 0:
            duet.check("a")
            duet.check("b")
    duet.exchange(400, dt=25, rng=rng, loss=0.1)
    duet.exchange(100, dt=25)
    assert b"".join(duet.received["b"]) == sent["a"]
    assert b"".join(duet.received["a"]) == sent["b"]
    assert duet.datagrams > 100


def test_fragmentation_edges(siokcp_module: ModuleType) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(1, 10, 2, 1, snd=256, rcv=256))
    rng = random.Random(5)
    messages = [payload(rng, n) for n in (0, 1, MSS - 1, MSS, MSS + 1, 2 * MSS, 127 * MSS)]
    for message in messages:
        assert duet.send("a", message) == len(message)
    assert duet.send("a", b"x" * (127 * MSS + 1)) == -2
    assert duet.send("a", b"y" * (300 * MSS)) == -2
    duet.exchange(200, dt=10)
    assert duet.received["b"] == messages
    # the 127-fragment message went out as frg 126 .. 0
    assert duet.sides["a"].py.get("snd_nxt") == 4 + 2 + 2 + 127


def test_stream_mode_coalescing_and_refusal(siokcp_module: ModuleType) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(1, 10, 2, 1, stream=True))
    rng = random.Random(6)
    data = b""
    for size in (0, 1, 10, MSS - 11, MSS, 5, 2 * MSS + 3, 0, 700):
        chunk = payload(rng, size)
        assert duet.send("a", chunk) == size
        data += chunk
    # a stream send needing >= 128 new segments is refused, but a partial top-up counts
    assert duet.send("a", b"z" * (128 * MSS)) == MSS - (len(data) % MSS)
    data += b"z" * (MSS - (len(data) % MSS))
    assert duet.send("a", b"q" * (128 * MSS)) == -2
    duet.exchange(100, dt=10)
    assert b"".join(duet.received["b"]) == data
    assert all(len(m) <= MSS for m in duet.received["b"])


@pytest.mark.parametrize("nc", [0, 1])
def test_window_full_and_zero_window_probing(siokcp_module: ModuleType, nc: int) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(0, 100, 0, nc, snd=64))
    for i in range(300):
        duet.send("a", bytes([i % 256]) * 100)
    # b never reads: its queue fills to rcv_wnd (128) and it announces wnd 0
    wasks = wins = 0
    for _ in range(500):
        duet.tick(100)
        wasks += sum(h[1] == 83 for d in duet.pending["a"] for h in segments(d))
        duet.deliver("a")
        wins += sum(h[1] == 84 for d in duet.pending["b"] for h in segments(d))
        duet.deliver("b")
    assert duet.sides["b"].py.get("nrcv_que") == 128
    a = duet.sides["a"].py
    assert a.get("rmt_wnd") == 0
    assert wasks >= 3  # probes at about 7 s, 17.5 s, 33 s (then WINS answers them)
    assert wins == wasks
    assert a.get("probe_wait") > 7000
    # reading reopens the window: WINS goes out at the next flush, the transfer resumes
    duet.recv_all("b")
    duet.exchange(200, dt=100)
    assert len(duet.received["b"]) == 300


def test_wask_timeline(siokcp_module: ModuleType) -> None:
    """Spec 14.9: peer announces wnd 0 at t=0, interval 100: WASK at 7100, 17600, 33400."""
    duet = Duet(siokcp_module)
    duet.update()
    # b fakes a closed window: a hand-made WINS with wnd 0 from the same conv
    wins = bytes.fromhex("44332211" "54" "00" "0000") + bytes(16)
    twin_a = duet.sides["a"]
    twin_a.do("input", wins)
    times = []
    for _ in range(34000):
        duet.now += 1
        _, out = twin_a.do("update", duet.now)
        if any(h[1] == 83 for d in out for h in segments(d)):
            times.append(duet.now)
    assert times == [7100, 17600, 33400]


@pytest.mark.parametrize("fastlimit", [5, 1, 0, -1])
def test_fast_resend_and_limit(siokcp_module: ModuleType, fastlimit: int) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(1, 10, 1, 1, fastlimit=fastlimit, snd=128, rcv=128))
    duet.update()
    for i in range(60):
        duet.send("a", bytes([i]) * 200)
    for step in range(120):
        duet.tick(3)
        # drop every datagram that carries sn 0 for a while: fast acks accumulate
        datagrams = duet.pending["a"]
        duet.pending["a"] = [d for d in datagrams
                             if step > 60 or not any(h[1] == 81 and h[5] == 0
                                                     for h in segments(d))]
        duet.deliver("a", flush=True)
        duet.deliver("b", flush=step % 2 == 0)
        duet.recv_all("b")
    duet.exchange(100, dt=10)
    assert len(duet.received["b"]) == 60


@pytest.mark.parametrize("nodelay", [0, 1, 2])
def test_rto_backoff_timelines(siokcp_module: ModuleType, nodelay: int) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(nodelay, 10, 0, 0))
    duet.send("a", b"lost")
    duet.update("a")
    times = []
    for _ in range(3100):
        duet.now += 1
        _, out = duet.sides["a"].do("update", duet.now)
        if out:
            times.append(duet.now)
    expected = {
        0: [10, 240, 640, 1440, 3040],
        1: [10, 210, 510, 960, 1640, 2660],
        2: [10, 210, 510, 910, 1410, 2010, 2710],
    }[nodelay]
    assert times == expected


@pytest.mark.parametrize("nodelay", [0, 1, 2])
def test_dead_link(siokcp_module: ModuleType, nodelay: int) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(nodelay, 10, 0, 0))
    duet.set("dead_link", 6)
    duet.send("a", b"into the void")
    duet.update()
    steps = 0
    while duet.sides["a"].py.get("state") == 0:
        duet.tick(50)
        duet.pending["a"].clear()  # every copy is lost
        steps += 1
        assert steps < 10_000
    assert duet.sides["a"].py.kcp.is_dead
    # KCP keeps retransmitting after declaring the link dead
    for _ in range(200):
        duet.tick(1000)
    assert duet.pending["a"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("profile", [PROFILES[0], PROFILES[2], PROFILES[4]],
                         ids=["default", "fast", "extreme"])
def test_wraparound(siokcp_module: ModuleType, stream: bool,
                    profile: tuple[str, int, int, int, int]) -> None:
    """Clock and sequence numbers both cross 2**32 during the run."""
    _, nodelay, interval, resend, nc = profile
    duet = Duet(siokcp_module, start=M32 - 3000)
    duet.configure(setup_profile(nodelay, interval, resend, nc, stream=stream))
    for field in ("snd_una", "snd_nxt", "rcv_nxt"):
        duet.set(field, 0xFFFFFFF0)
    rng = random.Random(7)
    sent = b""
    for round_ in range(300):
        if round_ < 100:
            data = payload(rng, rng.choice([1, 500, MSS + 3]))
            duet.send("a", data)
            sent += data
        duet.tick(rng.choice([5, 10, 30]))
        duet.deliver("a", rng, loss=0.15, reorder=True)
        duet.deliver("b", rng, loss=0.15, reorder=True)
        duet.recv_all("b")
    duet.exchange(300, dt=20)
    assert b"".join(duet.received["b"]) == sent
    assert duet.now < 1_000_000  # the clock wrapped
    assert duet.sides["a"].py.get("snd_nxt") < 0xFFFFFFF0  # so did the sequence numbers


def test_mtu_changes(siokcp_module: ModuleType) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(1, 10, 2, 1))
    rng = random.Random(8)
    sent = []
    for mtu in (1400, 576, 1500, 200, 9000, 50):
        # shrinking with larger segments still queued would overflow the C buffer when
        # they no longer fit in 3 * (mtu + 24): let the queue drain first
        duet.exchange(30, dt=10)
        duet.sides["a"].do("setmtu", mtu)
        duet.sides["b"].do("setmtu", mtu)
        for _ in range(5):
            message = payload(rng, rng.randint(0, 3 * mtu))
            if duet.send("a", message) >= 0:
                sent.append(message)
        duet.exchange(5, dt=10, rng=rng, loss=0.2)
    # shrink while segments of the old size are queued (safe size for the C buffer)
    duet.sides["a"].do("setmtu", 1400)
    duet.sides["b"].do("setmtu", 1400)
    for _ in range(10):
        message = payload(rng, 3000)
        duet.send("a", message)
        sent.append(message)
    duet.sides["a"].do("setmtu", 800)
    duet.exchange(200, dt=10)
    assert duet.received["b"] == sent


def test_congestion_window_growth_and_collapse(siokcp_module: ModuleType) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(0, 20, 2, 0, snd=128, rcv=256))
    rng = random.Random(9)
    cwnds = set()
    for round_ in range(400):
        if round_ % 2 == 0:
            for _ in range(4):
                duet.send("a", payload(rng, 1000))
        duet.tick(10)
        duet.deliver("a", rng, loss=0.05 if round_ > 200 else 0.0)
        duet.deliver("b")
        duet.recv_all("b")
        cwnds.add(duet.sides["a"].py.get("cwnd"))
    assert max(cwnds) > 10  # slow start and congestion avoidance happened
    assert 1 in cwnds  # and a timeout collapsed the window


def test_rtt_estimation_with_delays(siokcp_module: ModuleType) -> None:
    duet = Duet(siokcp_module)
    duet.configure(setup_profile(0, 10, 0, 0))
    rng = random.Random(10)
    rtos = set()
    for round_ in range(300):
        duet.send("a", payload(rng, 50))
        duet.tick(rng.choice([1, 3, 10, 40, 120]))
        if round_ % 3:
            duet.deliver("a")
        if round_ % 5:
            duet.deliver("b")
        duet.recv_all("b")
        rtos.add(duet.sides["a"].py.get("rx_rto"))
    assert len(rtos) > 5


@pytest.mark.parametrize("rtt", [0x7FFFFFFF, 0x40000000, 0x12345678, 0x08000000, 0x07FFFFFF])
def test_rtt_estimator_overflow_matches_reference(siokcp_module: ModuleType, rtt: int) -> None:
    """Hostile ACK timestamps give RTT samples up to 2**31-1: the estimator's 32-bit
    overflows (7 * srtt, 3 * rttval, 4 * rttval) must wrap exactly as in the C code."""
    duet = Duet(siokcp_module, start=5000)
    duet.configure(setup_profile(1, 10, 2, 1))
    duet.update()
    rng = random.Random(rtt)
    for i in range(40):
        duet.send("a", payload(rng, 200))
        if i % 4 == 0:
            forged = struct.pack("<IBBHIIII", 0x11223344, 82, 0, 128,
                                 (duet.now - rtt + rng.randint(-3, 3)) & M32,
                                 rng.randint(0, 5), 0, 0)
            duet.sides["a"].do("input", forged)
        duet.exchange(1, dt=10)
    duet.exchange(200, dt=10)
    assert len(duet.received["b"]) == 40
