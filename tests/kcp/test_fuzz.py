"""Hostile input: random and mutated datagrams never make ``input`` raise, return codes
follow the reference, invariants hold, and the session keeps working afterwards. The same
hostile datagrams fed to the C reference in lockstep give identical reactions."""

from __future__ import annotations

import random
import struct
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxio.transports.kcp.core import FAST, Kcp
from tests.kcp.harness import (
    DERANDOMIZE,
    EXAMPLES,
    HEADER,
    M32,
    Duet,
    End,
    check_invariants,
)

CONV = 0x11223344
MSS = 1376

INTERESTING_U32 = [0, 1, 2, 23, 24, 127, 128, 255, 256, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                   0xFFFFFFF0, M32]


def expected_code(datagram: bytes, conv: int) -> int:
    """input()'s return code, computed independently from the protocol description
    (docs/kcp.md, "The KCP protocol", section 4)."""
    if len(datagram) < 24:
        return -1
    offset = 0
    while len(datagram) - offset >= 24:
        sconv, cmd, _frg, _wnd, _ts, _sn, _una, length = HEADER.unpack_from(datagram, offset)
        if sconv != conv:
            return -1
        offset += 24
        if length > len(datagram) - offset:
            return -2
        if cmd not in (81, 82, 83, 84):
            return -3
        offset += length
    return 0


def first_length(datagram: bytes) -> int:
    """The len field of the first segment (0 if there is no full header)."""
    return int(HEADER.unpack_from(datagram)[7]) if len(datagram) >= 24 else 0


def snapshot(kcp: Kcp) -> tuple[object, ...]:
    return (kcp.snd_una, kcp.snd_nxt, kcp.rcv_nxt, kcp.rmt_wnd, kcp.cwnd, kcp.rx_rto,
            kcp.rx_srtt, kcp.probe, kcp.nrcv_buf, kcp.nrcv_que, kcp.ackcount, kcp.nsnd_buf)


def make_corpus(seed: int) -> tuple[list[bytes], list[bytes]]:
    """Real datagrams of a two-way exchange (both directions), to mutate."""
    rng = random.Random(seed)
    a = Kcp(CONV, profile=FAST)
    b = Kcp(CONV, profile=FAST)
    a_to_b: list[bytes] = []
    b_to_a: list[bytes] = []
    now = 0
    for i in range(40):
        if i < 20:
            a.send(rng.randbytes(rng.choice([1, 300, MSS, 3 * MSS])))
            b.send(rng.randbytes(rng.choice([0, 50, 2 * MSS])))
        now += 10
        a.update(now)
        b.update(now)
        for datagram in a.drain_output():
            a_to_b.append(datagram)
            b.input(datagram)
        for datagram in b.drain_output():
            b_to_a.append(datagram)
            a.input(datagram)
        while a.recv() is not None or b.recv() is not None:
            pass
    return a_to_b, b_to_a


CORPUS_A_TO_B, CORPUS_B_TO_A = make_corpus(1)
CORPUS = CORPUS_A_TO_B + CORPUS_B_TO_A


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real datagram with a few structure-aware or blind mutations."""
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "field", "cmd", "len", "truncate", "append",
                                     "splice", "frg"]))
        if kind == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "field" and len(data) >= 24:
            offset = draw(st.sampled_from([8, 12, 16, 20]))  # ts, sn, una, len
            value = draw(st.one_of(st.sampled_from(INTERESTING_U32), st.integers(0, M32)))
            struct.pack_into("<I", data, offset, value)
        elif kind == "cmd" and len(data) >= 24:
            data[4] = draw(st.sampled_from([0, 80, 81, 82, 83, 84, 85, 99, 255]))
        elif kind == "frg" and len(data) >= 24:
            data[5] = draw(st.sampled_from([0, 1, 2, 127, 128, 255]))
        elif kind == "len" and len(data) >= 24:
            struct.pack_into("<I", data, 20, draw(st.integers(0, len(data))))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "append":
            data += draw(st.binary(max_size=60))
        elif kind == "splice":
            data += draw(st.sampled_from(CORPUS))
    return bytes(data)


def hostile_datagrams() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        st.binary(min_size=24, max_size=200).map(
            lambda b: struct.pack("<I", CONV) + b[4:]),  # right conv, random rest
        mutated(),
    )


def _exchange(sender: Kcp, receiver: Kcp, messages: list[bytes], now: int) -> list[bytes]:
    """Send ``messages`` from sender to receiver without loss; what the receiver got."""
    for item in messages:
        assert sender.send(item) >= 0
    got: list[bytes] = []
    for _ in range(5000):
        now += 10
        sender.update(now)
        receiver.update(now)
        for datagram in sender.drain_output():
            assert receiver.input(datagram) == 0
        for datagram in receiver.drain_output():
            assert sender.input(datagram) == 0
        while (message := receiver.recv()) is not None:
            got.append(message)
        if len(got) >= len(messages) and sender.waitsnd() == 0:
            break
    return got


@settings(max_examples=300, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.binary(max_size=300))
def test_random_bytes_are_rejected_without_side_effects(junk: bytes) -> None:
    """A datagram whose first segment is invalid changes nothing at all."""
    kcp = Kcp(CONV, profile=FAST)
    kcp.update(0)
    before = snapshot(kcp)
    code = kcp.input(junk)
    assert code == expected_code(junk, CONV)
    if code != 0 and expected_code(junk[:24 + first_length(junk)], CONV) != 0:
        assert snapshot(kcp) == before  # the very first segment was refused
    check_invariants(kcp)


@settings(max_examples=300, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(hostile_datagrams(), min_size=1, max_size=8))
def test_hostile_input_keeps_invariants_and_sending_works(datagrams: list[bytes]) -> None:
    victim = Kcp(CONV, profile=FAST)
    victim.update(1000)
    for datagram in datagrams:
        code = victim.input(datagram)
        assert code == expected_code(datagram, CONV)
        check_invariants(victim)
        victim.update(1010)
        victim.flush()
        check_invariants(victim)
    victim.drain_output()
    while victim.recv() is not None:
        check_invariants(victim)
    # the victim still works as a sender towards a peer synchronised with it
    peer = Kcp(CONV, profile=FAST)
    peer.rcv_nxt = victim.snd_nxt
    peer.update(1010)
    messages = [bytes([i]) * (i * 97 % 3000) for i in range(20)]
    assert _exchange(victim, peer, messages, 1010) == messages
    check_invariants(victim)


@settings(max_examples=200, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.binary(max_size=200).filter(
    lambda b: len(b) < 24 or b[:4] != struct.pack("<I", CONV)), max_size=10))
def test_rejected_garbage_does_not_disturb_a_transfer(junk: list[bytes]) -> None:
    """Garbage interleaved with a transfer (wrong conv or short) changes nothing."""
    a = Kcp(CONV, profile=FAST)
    b = Kcp(CONV, profile=FAST)
    a.update(0)
    b.update(0)
    for item in junk:
        assert b.input(item) == -1
        assert a.input(item) == -1
    messages = [bytes([i]) * (i * 331 % 5000) for i in range(15)]
    assert _exchange(a, b, messages, 0) == messages


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile=st.lists(st.tuples(st.sampled_from("ab"), hostile_datagrams()),
                        min_size=1, max_size=6),
       seed=st.integers(0, 2**16))
def test_hostile_input_lockstep_with_reference(siokcp_module: ModuleType,
                                               hostile: list[tuple[str, bytes]],
                                               seed: int) -> None:
    """The C reference reacts to the same hostile datagrams exactly like our core, and the
    sessions keep evolving identically afterwards."""
    rng = random.Random(seed)
    duet = Duet(siokcp_module, conv=CONV)

    def fast(end: End) -> None:
        end.nodelay(1, 10, 2, 1)
        end.wndsize(128, 128)

    duet.configure(fast)
    for _ in range(5):
        duet.send("a", rng.randbytes(rng.choice([10, 2000])))
        duet.send("b", rng.randbytes(rng.choice([10, 500])))
        duet.exchange(2, dt=10, rng=rng, loss=0.2)
    for side, datagram in hostile:
        duet.sides[side].do("input", datagram)
        duet.sides[side].do("flush")
    for _ in range(5):
        duet.send("a", rng.randbytes(100))
        duet.send("b", rng.randbytes(3000))
    duet.exchange(150, dt=10)
    check_invariants(duet.sides["a"].py.kcp)
    check_invariants(duet.sides["b"].py.kcp)
