"""Hypothesis-generated operation sequences, run on our core and on the C reference in
lockstep: random configurations, sends of random sizes, random clock steps, and delivery
with random loss, duplication and reordering. Everything must stay byte-identical, and
after a clean drain phase every accepted byte must have arrived."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kcp.harness import DERANDOMIZE, EXAMPLES, Duet, End

SIDES = st.sampled_from(["a", "b"])

CONFIGS = st.fixed_dictionaries({
    "nodelay": st.sampled_from([0, 1, 2]),
    "interval": st.sampled_from([10, 20, 40, 100]),
    "resend": st.sampled_from([0, 1, 2, 3]),
    "nc": st.sampled_from([0, 1]),
    "stream": st.booleans(),
    "snd": st.sampled_from([0, 4, 32, 128]),
    "rcv": st.sampled_from([0, 128, 256]),
    "mtu": st.sampled_from([1400, 576, 100]),
    "fastlimit": st.sampled_from([5, 1, 0]),
    "minrto": st.sampled_from([None, 10, 50]),
    "start_sn": st.sampled_from([None, 0xFFFFFFF0, 0x7FFFFFF8]),
    "clock": st.sampled_from([0, 2**32 - 700, 123456]),
})

SIZES = st.one_of(
    st.integers(0, 3000),
    st.sampled_from([0, 1, 75, 76, 77, 552, 553, 1375, 1376, 1377, 9652, 9653, 174752]),
)

OPS = st.one_of(
    st.tuples(st.just("send"), SIDES, SIZES),
    st.tuples(st.just("send"), SIDES, SIZES),
    st.tuples(st.just("tick"), st.one_of(st.integers(1, 300),
                                         st.sampled_from([1000, 7000, 10001, 20000]))),
    st.tuples(st.just("tick"), st.integers(1, 50)),
    st.tuples(st.just("deliver"), SIDES, st.integers(0, 2**32 - 1)),
    st.tuples(st.just("deliver"), SIDES, st.integers(0, 2**32 - 1)),
    st.tuples(st.just("recv"), SIDES),
    st.tuples(st.just("flush"), SIDES),
    st.tuples(st.just("check"), SIDES),
    st.tuples(st.just("peeksize"), SIDES),
    st.tuples(st.just("wndsize"), SIDES, st.sampled_from([0, 2, 16, 64]),
              st.sampled_from([0, 130, 300])),
)


def configure(config: dict[str, Any]) -> Any:
    def setup(end: End) -> None:
        end.nodelay(config["nodelay"], config["interval"], config["resend"], config["nc"])
        end.wndsize(config["snd"], config["rcv"])
        end.setmtu(config["mtu"])
        end.set("fastlimit", config["fastlimit"])
        if config["stream"]:
            end.set("stream", 1)
        if config["minrto"] is not None:
            end.set("rx_minrto", config["minrto"])
        if config["start_sn"] is not None:
            for field in ("snd_una", "snd_nxt", "rcv_nxt"):
                end.set(field, config["start_sn"])
    return setup


def run(module: ModuleType, config: dict[str, Any],
        ops: list[tuple[Any, ...]]) -> tuple[Duet, dict[str, list[bytes]]]:
    """Apply ``ops`` in lockstep, then drain without loss; (duet, accepted sends)."""
    duet = Duet(module, start=config["clock"])
    duet.configure(configure(config))
    sent: dict[str, list[bytes]] = {"a": [], "b": []}
    counter = 0
    for op in ops:
        kind = op[0]
        if kind == "send":
            counter += 1
            data = random.Random(counter).randbytes(op[2])
            accepted = duet.send(op[1], data)
            if accepted >= 0:  # stream mode may accept a prefix (a top-up) and refuse the rest
                sent[op[1]].append(data[:accepted])
        elif kind == "tick":
            duet.tick(op[1])
        elif kind == "deliver":
            rng = random.Random(op[2])
            duet.deliver(op[1], rng, loss=rng.choice([0.0, 0.1, 0.3, 1.0]),
                         dup=rng.choice([0.0, 0.2]), reorder=rng.random() < 0.5,
                         flush=rng.random() < 0.5)
        elif kind == "recv":
            duet.recv_all(op[1])
        elif kind == "wndsize":
            duet.call(op[1], "wndsize", op[2], op[3])
        else:
            duet.call(op[1], kind, *((duet.now,) if kind == "check" else ()))
    # drain: no loss, everybody reads, until nothing is in flight
    for _ in range(3000):
        duet.exchange(1, dt=config["interval"])
        idle = all(duet.sides[s].py.waitsnd() == 0 and not duet.pending[s] for s in "ab")
        if idle:
            break
    return duet, sent


def assert_delivered(duet: Duet, sent: dict[str, list[bytes]], stream: bool) -> None:
    for side, other in (("a", "b"), ("b", "a")):
        if stream:
            assert b"".join(duet.received[other]) == b"".join(sent[side])
        else:
            assert duet.received[other] == sent[side]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config=CONFIGS, ops=st.lists(OPS, min_size=5, max_size=80))
def test_random_sequences_lockstep(siokcp_module: ModuleType, config: dict[str, Any],
                                   ops: list[tuple[Any, ...]]) -> None:
    duet, sent = run(siokcp_module, config, ops)
    assert_delivered(duet, sent, config["stream"])


@settings(max_examples=max(10, EXAMPLES // 5), deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow])
@given(config=CONFIGS, seed=st.integers(0, 2**32 - 1))
def test_random_lossy_bulk_lockstep(siokcp_module: ModuleType, config: dict[str, Any],
                                    seed: int) -> None:
    """Longer runs: steady two-way traffic through a 20% loss, duplicating, reordering link."""
    rng = random.Random(seed)
    ops: list[tuple[Any, ...]] = []
    for _ in range(150):
        roll = rng.random()
        if roll < 0.3:
            ops.append(("send", rng.choice("ab"), rng.choice([1, 100, 1400, 4000])))
        ops.append(("tick", rng.choice([1, 5, 10, 20])))
        ops.append(("deliver", "a", rng.getrandbits(32)))
        ops.append(("deliver", "b", rng.getrandbits(32)))
        ops.append(("recv", "a"))
        ops.append(("recv", "b"))
    duet, sent = run(siokcp_module, config, ops)
    assert_delivered(duet, sent, config["stream"])
    assert duet.datagrams > 0
