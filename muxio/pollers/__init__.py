"""Floor 1: pollers. One `Poller` interface over select, poll, epoll and any selector."""

from muxio.config import AUTO
from muxio.pollers.base import (
    ALL_EVENTS,
    ERROR,
    HUP,
    RDHUP,
    READ,
    WRITE,
    Capabilities,
    Poller,
    PollerStatistics,
    describe_events,
)
from muxio.pollers.epoll_poller import EdgeTriggeredEpollPoller, EpollPoller
from muxio.pollers.poll_poller import PollPoller
from muxio.pollers.registry import (
    BackendSpec,
    Features,
    Registry,
    default_registry,
)
from muxio.pollers.select_poller import FD_SETSIZE, SelectPoller
from muxio.pollers.selectors_adapter import SelectorsPoller

__all__ = [
    "ALL_EVENTS", "AUTO", "ERROR", "FD_SETSIZE", "HUP", "RDHUP", "READ", "WRITE", "BackendSpec",
    "Capabilities", "EdgeTriggeredEpollPoller", "EpollPoller", "Features", "PollPoller",
    "Poller", "PollerStatistics", "Registry", "SelectPoller", "SelectorsPoller",
    "default_registry", "describe_events",
]
