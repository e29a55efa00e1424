"""epoll's results are muxio's flags as they come (no per-event translation), and the
edge-triggered backend tells a reader, with RDHUP beside READ, that the peer's FIN is
queued behind its data."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from muxio.pollers import ERROR, HUP, RDHUP, READ, WRITE, describe_events
from muxio.pollers.epoll_poller import EdgeTriggeredEpollPoller, EpollPoller

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux only")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    yield left, right
    left.close()
    right.close()


def test_muxio_flags_are_linux_values() -> None:
    assert (READ, WRITE, ERROR, HUP, RDHUP) == (select.EPOLLIN, select.EPOLLOUT,
                                                select.EPOLLERR, select.EPOLLHUP,
                                                select.EPOLLRDHUP)
    assert describe_events(READ | RDHUP) == "READ|RDHUP"


@pytest.mark.parametrize("poller_class", [EpollPoller, EdgeTriggeredEpollPoller])
def test_results_are_epolls_own_list(poller_class: type[EpollPoller],
                                     pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    with poller_class() as poller:
        returned: list[list[tuple[int, int]]] = []
        epoll = poller._epoll

        class Recording:  # select.epoll's methods cannot be patched: wrap the object
            def __getattr__(self, name: str) -> object:
                return getattr(epoll, name)

            def poll(self, *args: float) -> list[tuple[int, int]]:
                returned.append(epoll.poll(*args))
                return returned[-1]

        poller._epoll = Recording()  # type: ignore[assignment]
        poller.register(left, READ | WRITE)
        right.send(b"x")
        events = poller.poll(1.0)
        assert events is returned[0]  # epoll's own list: no per-event translation
        assert events == [(left.fileno(), READ | WRITE)]


def test_edge_triggered_reports_a_queued_fin_as_rdhup_with_read(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    with EdgeTriggeredEpollPoller() as poller:
        poller.register(left, READ)
        right.send(b"last words")
        right.shutdown(socket.SHUT_WR)
        [(fd, events)] = poller.poll(1.0)
        assert fd == left.fileno()
        assert events & (READ | RDHUP) == READ | RDHUP, describe_events(events)
        assert left.recv(100) == b"last words"  # short read, and the FIN is still to come
        assert left.recv(100) == b""


def test_level_triggered_does_not_ask_for_rdhup(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    with EpollPoller() as poller:
        poller.register(left, READ)
        right.shutdown(socket.SHUT_WR)
        [(_, events)] = poller.poll(1.0)
        assert events == READ
