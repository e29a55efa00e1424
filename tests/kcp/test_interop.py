"""Interop over a simulated network (seeded loss, delay, reordering, duplication): our core
and the C reference talk to each other (both directions) and to themselves; every message
arrives intact and in order, in message and stream mode, up to 20% loss."""

from __future__ import annotations

import random
from types import ModuleType

import pytest

from muxio.transports.kcp.core import EXTREME, FAST, NORMAL, KcpProfile
from tests.kcp.harness import CEnd, End, PyEnd, SimNet, run_transfer

CONV = 0x0BADCAFE


def make_end(kind: str, module: ModuleType | None, profile: KcpProfile,
             stream: bool) -> End:
    end: End
    if kind == "py":
        end = PyEnd(CONV)
    else:
        assert module is not None
        end = CEnd(module, CONV)
    end.nodelay(profile.nodelay, profile.interval, profile.resend, profile.nc)
    end.wndsize(profile.snd_wnd, profile.rcv_wnd)
    if profile.rx_minrto is not None:
        end.set("rx_minrto", profile.rx_minrto)
    if stream:
        end.set("stream", 1)
    return end


def plan_messages(seed: int, count: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    plan = []
    for i in range(count):
        size = rng.choice([1, 10, 700, 1376, 1377, 4000, 20000, rng.randint(0, 3000)])
        side = "a" if i % 3 else "b"
        plan.append((side, rng.randbytes(size)))
    return plan


def check_delivery(got: dict[str, list[bytes]], plan: list[tuple[str, bytes]],
                   stream: bool) -> None:
    for receiver, sender in (("b", "a"), ("a", "b")):
        sent = [m for s, m in plan if s == sender]
        if stream:
            assert b"".join(got[receiver]) == b"".join(sent)
            assert all(0 < len(m) <= 1376 for m in got[receiver])
        else:
            assert got[receiver] == sent


PAIRS = [("py", "c"), ("c", "py"), ("py", "py"), ("c", "c")]


@pytest.mark.parametrize("loss", [0.0, 0.05, 0.2])
@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_transfer_over_lossy_link(siokcp_module: ModuleType, pair: tuple[str, str],
                                  stream: bool, loss: float) -> None:
    seed = hash((pair, stream, loss)) & 0xFFFF
    plan = plan_messages(seed, 60)
    a = make_end(pair[0], siokcp_module, FAST, stream)
    b = make_end(pair[1], siokcp_module, FAST, stream)
    net = SimNet(a, b, seed=seed, loss=loss, dup=0.05, delay=(2, 30))
    got = run_transfer(net, plan, stream=stream)
    check_delivery(got, plan, stream)
    if loss:
        assert net.lost > 0


@pytest.mark.parametrize("profile", [NORMAL, EXTREME], ids=["normal", "extreme"])
@pytest.mark.parametrize("pair", [("py", "c"), ("c", "py")], ids=["py-c", "c-py"])
def test_other_profiles_interoperate(siokcp_module: ModuleType, pair: tuple[str, str],
                                     profile: KcpProfile) -> None:
    plan = plan_messages(99, 40)
    a = make_end(pair[0], siokcp_module, profile, False)
    b = make_end(pair[1], siokcp_module, profile, False)
    net = SimNet(a, b, seed=7, loss=0.1, dup=0.02, delay=(1, 20))
    check_delivery(run_transfer(net, plan, stream=False), plan, False)


def test_ours_alone_without_reference() -> None:
    """ours <-> ours needs no C peer: 20% loss, reordering, duplication, clock wrap."""
    for stream in (False, True):
        plan = plan_messages(3, 80)
        a = make_end("py", None, FAST, stream)
        b = make_end("py", None, FAST, stream)
        net = SimNet(a, b, seed=11, loss=0.2, dup=0.1, delay=(1, 40), start=2**32 - 20)
        got = run_transfer(net, plan, stream=stream)
        check_delivery(got, plan, stream)
        assert net.clock > 2**32  # the endpoints' clock wrapped during the run
