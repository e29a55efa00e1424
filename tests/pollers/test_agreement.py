"""Hypothesis drives random register/modify/unregister/poll sequences through every
backend at once, on the same sockets. Level-triggered backends must agree with each other
and with poll(2) on every result; edge-triggered ones (whose reports depend on wake-ups,
not only on state) must report every new edge, nothing without one, and nothing that is
not ready or not asked for."""

from __future__ import annotations

import select
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

    def act(self, action: str, index: int, events: int = 0) -> bool:
        """Do `action` on every backend; they must agree on its outcome. True if done."""
        outcomes = {poller.name: self.outcome(poller, action, index, events)
                    for poller in self.pollers}
        assert len(set(outcomes.values())) <= 1, outcomes
        if set(outcomes.values()) != {"ok"}:
            return False
        if action == "unregister":
            del self.registered[self.fd(index)]
        else:
            self.registered[self.fd(index)] = events
        return True

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
        truth = readiness([left for left, _ in self.pairs])
        expected = {fd: ready & events for fd, events in self.registered.items()
                    if (ready := truth[fd] & events)}
        assert all(result == expected for result in results.values()), (expected, results)
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


def readiness(socks: list[socket.socket]) -> dict[int, int]:
    """What poll(2) says of each socket now: the ground truth, as READ|WRITE."""
    probe = select.poll()
    for sock in socks:
        probe.register(sock, select.POLLIN | select.POLLOUT)
    ready = dict.fromkeys((sock.fileno() for sock in socks), 0)
    for fd, events in probe.poll(0):
        ready[fd] = ((READ if events & select.POLLIN else 0)
                     | (WRITE if events & select.POLLOUT else 0))
    return ready


class EdgeTriggeredPollersBehave(PollersAgree):
    """The edge-triggered contract, checked on every edge-triggered backend at once.

    An edge is a wake-up of the fd (here: the peer sends while READ is asked for) or an
    arm (register, modify: both report current readiness, as EPOLL_CTL_ADD/MOD do).
    Backends differ in what else they put in a report (epoll-et adds every ready event
    to a data wake-up; io_uring reports the wake-up's own events), so the checks are
    bounds: each expected edge is reported, and a report holds only asked-for events
    that are ready now, for an fd that had an edge.
    """

    def __init__(self) -> None:
        RuleBasedStateMachine.__init__(self)
        registry = default_registry()
        self.pollers = [registry.create(name) for name in poller_backends()
                        if registry.get(name).capabilities.edge_triggered]
        self.pairs = [socket.socketpair() for _ in range(N_SOCKETS)]
        for left, right in self.pairs:
            left.setblocking(False)
            right.setblocking(False)
        self.registered = {}
        self.must_report: dict[int, int] = {}
        """fd -> events every backend must report at the next poll."""
        self.had_edge: set[int] = set()

    def act(self, action: str, index: int, events: int = 0) -> bool:
        if not super().act(action, index, events):
            return False
        fd = self.fd(index)
        if action == "unregister":
            self.had_edge.discard(fd)
            self.must_report.pop(fd, None)
        else:
            self.had_edge.add(fd)
            self.must_report[fd] = readiness([self.pairs[index][0]])[fd] & events
        return True

    @rule(index=st.integers(0, N_SOCKETS - 1), size=st.integers(1, 64))
    def peer_sends(self, index: int, size: int) -> None:
        self.pairs[index][1].send(b"d" * size)
        fd = self.fd(index)
        if self.registered.get(fd, 0) & READ:
            self.had_edge.add(fd)
            self.must_report[fd] = self.must_report.get(fd, 0) | READ

    @invariant()
    def polls_agree(self) -> None:
        truth = readiness([left for left, _ in self.pairs])
        for poller in self.pollers:
            got = {fd: ev & (READ | WRITE) for fd, ev in poller.poll(0)}
            got = {fd: ev for fd, ev in got.items() if ev}
            assert set(poller.registered()) == set(self.registered)
            for fd, events in self.must_report.items():
                assert got.get(fd, 0) & events == events, (poller.name, "missed an edge",
                                                           fd, events, got)
            for fd, events in got.items():
                assert fd in self.had_edge, (poller.name, "reported without an edge", fd)
                assert events & ~(self.registered[fd] & truth[fd]) == 0, (
                    poller.name, "reported an event not asked for or not ready", fd, events)
        self.must_report.clear()
        self.had_edge.clear()


EdgeTriggeredPollersBehave.TestCase.settings = settings(max_examples=60,
                                                        stateful_step_count=30, deadline=None)
TestEdgeTriggeredPollersBehave = EdgeTriggeredPollersBehave.TestCase
