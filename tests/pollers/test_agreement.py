"""Hypothesis drives random register/modify/unregister/poll sequences through every
level-triggered backend at once, on the same sockets; they must agree on every result."""

from __future__ import annotations

import socket

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from muxio.pollers import READ, WRITE, Poller, default_registry
from muxio.testing.matrix import poller_backends

N_SOCKETS = 4
EVENT_MASKS = st.sampled_from([0, READ, WRITE, READ | WRITE])


class PollersAgree(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        registry = default_registry()
        self.pollers: list[Poller] = [
            registry.create(name) for name in poller_backends()
            if not registry.get(name).capabilities.edge_triggered]
        self.pairs = [socket.socketpair() for _ in range(N_SOCKETS)]
        for left, right in self.pairs:
            left.setblocking(False)
            right.setblocking(False)
        self.registered: dict[int, int] = {}

    def fd(self, index: int) -> int:
        return self.pairs[index][0].fileno()

    def outcome(self, poller: Poller, action: str, index: int, events: int) -> str:
        try:
            getattr(poller, action)(*((self.fd(index), events) if action != "unregister"
                                      else (self.fd(index),)))
        except Exception as exc:
            return type(exc).__name__
        return "ok"

    def act(self, action: str, index: int, events: int = 0) -> None:
        outcomes = {poller.name: self.outcome(poller, action, index, events)
                    for poller in self.pollers}
        assert len(set(outcomes.values())) == 1, outcomes
        if next(iter(outcomes.values())) == "ok":
            if action == "unregister":
                del self.registered[self.fd(index)]
            else:
                self.registered[self.fd(index)] = events

    @rule(index=st.integers(0, N_SOCKETS - 1), events=EVENT_MASKS)
    def register(self, index: int, events: int) -> None:
        self.act("register", index, events)

    @rule(index=st.integers(0, N_SOCKETS - 1), events=EVENT_MASKS)
    def modify(self, index: int, events: int) -> None:
        self.act("modify", index, events)

    @rule(index=st.integers(0, N_SOCKETS - 1))
    def unregister(self, index: int) -> None:
        self.act("unregister", index)

    @rule(index=st.integers(0, N_SOCKETS - 1), size=st.integers(1, 64))
    def peer_sends(self, index: int, size: int) -> None:
        self.pairs[index][1].send(b"d" * size)

    @rule(index=st.integers(0, N_SOCKETS - 1), size=st.integers(1, 64))
    def reader_takes(self, index: int, size: int) -> None:
        try:
            self.pairs[index][0].recv(size)
        except BlockingIOError:
            pass

    @invariant()
    def polls_agree(self) -> None:
        results = {}
        for poller in self.pollers:
            got = {fd: ev & (READ | WRITE) for fd, ev in poller.poll(0)}
            results[poller.name] = {fd: ev for fd, ev in got.items() if ev}
            assert set(poller.registered()) == set(self.registered)
        expected = next(iter(results.values()))
        assert all(result == expected for result in results.values()), results
        for fd, ev in expected.items():
            assert ev & ~self.registered[fd] == 0, "reported events that were not asked for"

    def teardown(self) -> None:
        for poller in self.pollers:
            poller.close()
        for left, right in self.pairs:
            left.close()
            right.close()


PollersAgree.TestCase.settings = settings(max_examples=60, stateful_step_count=30,
                                          deadline=None)
TestPollersAgree = PollersAgree.TestCase
