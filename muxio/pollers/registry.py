"""The backend table: every poller muxio can run on, as data, in order of preference.

Like libevent's `eventops[]`, each row is a name, a factory, feature bits and an
availability check that returns the reason a backend cannot run here (or None).
Third-party packages add rows through the `muxio.pollers` entry-point group:

    [project.entry-points."muxio.pollers"]
    my-poller = "my_package.module:MyPoller"

The object named may be a `Poller` subclass (its `name`/`capabilities` class attributes
are used; an optional `available()` classmethod returns a reason or None), a
`BackendSpec`, or a zero-argument callable returning a Poller.

`auto` is the first available row, by rank, that has the features asked for.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import select
import selectors
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from muxio.config import AUTO
from muxio.errors import BackendUnavailableError, MissingFeatureError, UnknownBackendError
from muxio.pollers.base import Capabilities, Poller
from muxio.pollers.epoll_poller import EdgeTriggeredEpollPoller, EpollPoller
from muxio.pollers.poll_poller import PollPoller
from muxio.pollers.select_poller import SelectPoller
from muxio.pollers.selectors_adapter import SELECTOR_CAPABILITIES, SelectorsPoller
from muxio.pollers.uring_poller import UringCompletionPoller, UringPoller
from muxio.pollers.uring_poller import unavailable_reason as _uring_reason

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "muxio.pollers"


def _always() -> str | None:
    return None


@dataclass(frozen=True)
class BackendSpec:
    """One row of the backend table."""

    name: str
    factory: Callable[[], Poller]
    description: str
    capabilities: Capabilities
    availability: Callable[[], str | None] = _always
    """Returns None when the backend can run here, else the reason it cannot."""
    rank: int = 100
    """Lower = preferred by `auto`."""
    source: str = "built-in"
    in_matrix: bool = True
    """Whether the handler test/bench matrix includes it (False for aliases that add
    nothing, e.g. selectors-poll beside poll)."""

    def unavailable_reason(self) -> str | None:
        try:
            return self.availability()
        except Exception as exc:  # a plugin's check must not break listing
            return f"availability check failed: {exc!r}"

    @property
    def available(self) -> bool:
        return self.unavailable_reason() is None


@dataclass(frozen=True)
class Features:
    """What a caller requires of a backend (checked when one is chosen, not at runtime)."""

    edge_triggered: bool = False
    constant_time: bool = False
    min_fd_limit: int | None = None
    """The backend must watch fds at least this high (None = any)."""

    def missing(self, caps: Capabilities) -> list[str]:
        missing = []
        if self.edge_triggered and not caps.edge_triggered:
            missing.append("edge triggering")
        if self.constant_time and not caps.constant_time:
            missing.append("O(1) polling")
        if (self.min_fd_limit is not None and caps.max_fd is not None
                and caps.max_fd < self.min_fd_limit):
            missing.append(f"fds up to {self.min_fd_limit} (limit {caps.max_fd})")
        return missing


def _needs(module: object, attr: str, what: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if hasattr(module, attr):
            return None
        return f"{what} is not available on this OS ({sys.platform})"
    return check


def _selectors2_reason() -> str | None:
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if importlib.util.find_spec("selectors2") is None:
        return ("selectors2 is not installed, and it does not import on Python >= 3.10 "
                "anyway (it uses collections.Mapping, removed in 3.10); use the built-in "
                "'selectors' backend")
    try:
        importlib.import_module("selectors2")
    except Exception as exc:
        return (f"selectors2 does not import on Python {python}: {exc} (it uses "
                f"collections.Mapping, removed in 3.10); use the built-in 'selectors' backend")
    return None


def _selectors2_factory() -> Poller:
    selectors2 = importlib.import_module("selectors2")
    selector_class: type[selectors.BaseSelector] = selectors2.DefaultSelector
    return SelectorsPoller(selector_class, name="selectors2")


def _selector_row(suffix: str, class_name: str, what: str, rank: int) -> BackendSpec:
    name = f"selectors-{suffix}"

    def factory() -> Poller:
        return SelectorsPoller(getattr(selectors, class_name), name=name)

    return BackendSpec(
        name=name, factory=factory,
        description=f"selectors.{class_name} through the adapter ({what})",
        capabilities=SELECTOR_CAPABILITIES[class_name],
        availability=_needs(selectors, class_name, f"selectors.{class_name}"), rank=rank,
        in_matrix=False)


def _default_selector_capabilities() -> Capabilities:
    return SELECTOR_CAPABILITIES.get(selectors.DefaultSelector.__name__,
                                     Capabilities(reports_hup=False))


BUILTIN_BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec("epoll", EpollPoller, "epoll(7), level-triggered (Linux)",
                EpollPoller.capabilities, _needs(select, "epoll", "epoll"), rank=10),
    BackendSpec("epoll-et", EdgeTriggeredEpollPoller, "epoll(7), edge-triggered (Linux)",
                EdgeTriggeredEpollPoller.capabilities, _needs(select, "epoll", "epoll"),
                rank=15),
    # After epoll and epoll-et: `auto` keeps epoll, and asking for edge triggering still
    # gets epoll-et; name it (--backend uring) to use it.
    BackendSpec("uring", UringPoller,
                "io_uring multishot poll, edge-triggered, one syscall per poll (Linux >= 5.17)",
                UringPoller.capabilities, _uring_reason, rank=16),
    # TCP in io_uring's completion mode, chosen by this capability, invisible to handlers.
    # Not faster than readiness in Python (see uring_tcp.py): opt-in by
    # name, and not in the handler matrix (tests/transports/test_uring_tcp.py runs the
    # conformance suite and the stress scenarios on it).
    BackendSpec("uring-completion", UringCompletionPoller,
                "io_uring with TCP in completion mode (kernel recv/send/accept); opt-in",
                UringCompletionPoller.capabilities, _uring_reason, rank=17, in_matrix=False),
    BackendSpec("selectors", SelectorsPoller,
                f"selectors.DefaultSelector through the adapter "
                f"(here: {selectors.DefaultSelector.__name__})",
                _default_selector_capabilities(), rank=20),
    BackendSpec("poll", PollPoller, "poll(2)", PollPoller.capabilities,
                _needs(select, "poll", "poll"), rank=30),
    BackendSpec("select", SelectPoller, "select(2), fds < 1024", SelectPoller.capabilities,
                rank=40),
    _selector_row("epoll", "EpollSelector", "Linux", 50),
    _selector_row("kqueue", "KqueueSelector", "BSD, macOS", 21),
    _selector_row("devpoll", "DevpollSelector", "Solaris", 22),
    _selector_row("poll", "PollSelector", "POSIX", 60),
    _selector_row("select", "SelectSelector", "portable", 70),
    BackendSpec("selectors2", _selectors2_factory,
                "the third-party selectors2 backport through the adapter",
                Capabilities(reports_hup=False), _selectors2_reason, rank=200),
)


def _spec_from_entry_point(ep: importlib.metadata.EntryPoint) -> BackendSpec:
    source = f"plugin ({ep.dist.name if ep.dist else 'unknown distribution'}: {ep.value})"
    try:
        obj = ep.load()
    except Exception as exc:
        reason = f"plugin failed to import: {exc!r}"

        def broken() -> Poller:
            raise BackendUnavailableError(f"backend {ep.name!r}: {reason}")

        return BackendSpec(ep.name, broken, f"entry point {ep.value}", Capabilities(),
                           lambda: reason, source=source)
    if isinstance(obj, BackendSpec):
        return BackendSpec(obj.name, obj.factory, obj.description, obj.capabilities,
                           obj.availability, obj.rank, source, obj.in_matrix)
    if isinstance(obj, type) and issubclass(obj, Poller):
        poller_class: type[Poller] = obj
        check = getattr(poller_class, "available", None)
        availability: Callable[[], str | None] = check if callable(check) else _always
        doc = (poller_class.__doc__ or "").strip().splitlines()
        return BackendSpec(ep.name, poller_class, doc[0] if doc else f"plugin {ep.value}",
                           poller_class.capabilities, availability, rank=100, source=source)
    if callable(obj):
        factory: Callable[[], Poller] = obj
        return BackendSpec(ep.name, factory, f"plugin {ep.value}", Capabilities(),
                           rank=100, source=source)
    reason = f"entry point {ep.value} is neither a Poller subclass, a BackendSpec nor callable"
    return BackendSpec(ep.name, SelectPoller, reason, Capabilities(), lambda: reason,
                       source=source)


@dataclass
class Registry:
    """An ordered table of backends; built-ins first, plugins added by entry points."""

    specs: dict[str, BackendSpec] = field(default_factory=dict)

    @classmethod
    def with_builtins(cls, *, plugins: bool = True) -> Registry:
        registry = cls()
        for spec in BUILTIN_BACKENDS:
            registry.add(spec)
        if plugins:
            registry.load_entry_points()
        return registry

    def add(self, spec: BackendSpec, *, replace: bool = False) -> None:
        if spec.name in self.specs and not replace:
            raise ValueError(f"backend {spec.name!r} is already registered "
                             f"({self.specs[spec.name].source})")
        if spec.name == AUTO:
            raise ValueError("'auto' is reserved; choose another backend name")
        self.specs[spec.name] = spec

    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self.specs:
                log.warning("plugin backend %r (%s) ignored: the name is already taken by %s",
                            ep.name, ep.value, self.specs[ep.name].source)
                continue
            self.add(_spec_from_entry_point(ep))

    def names(self) -> list[str]:
        return list(self.specs)

    def available_names(self) -> list[str]:
        return sorted(name for name, spec in self.specs.items() if spec.available)

    def matrix_names(self) -> list[str]:
        """Available backends the handler test and bench matrices run on, by preference
        (aliases that add nothing, such as selectors-poll beside poll, are left out)."""
        return [spec.name for spec in self.ordered() if spec.available and spec.in_matrix]

    def ordered(self) -> list[BackendSpec]:
        """Rows in order of preference (as `auto` sees them)."""
        return sorted(self.specs.values(), key=lambda spec: (spec.rank, spec.name))

    def get(self, name: str) -> BackendSpec:
        spec = self.specs.get(name)
        if spec is None:
            raise UnknownBackendError(
                f"{name!r} is not a backend; available: {', '.join(self.available_names())}")
        return spec

    def choose(self, name: str = AUTO, features: Features | None = None) -> BackendSpec:
        """The spec for `name` (or `auto`), checked for availability and features."""
        features = features or Features()
        if name == AUTO:
            for spec in self.ordered():
                if spec.available and not features.missing(spec.capabilities):
                    return spec
            raise BackendUnavailableError(
                f"no available backend has {', '.join(features.missing(Capabilities()))}; "
                f"available: {', '.join(self.available_names())}")
        spec = self.get(name)
        reason = spec.unavailable_reason()
        if reason is not None:
            raise BackendUnavailableError(
                f"backend {name!r} is not available here: {reason}. "
                f"Available: {', '.join(self.available_names())}")
        missing = features.missing(spec.capabilities)
        if missing:
            raise MissingFeatureError(
                f"backend {name!r} lacks {', '.join(missing)}; choose another backend "
                f"(e.g. {self.choose(AUTO, features).name!r})")
        return spec

    def create(self, name: str = AUTO, features: Features | None = None) -> Poller:
        return self.choose(name, features).factory()


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The process-wide registry: built-ins plus installed plugins (loaded once)."""
    return Registry.with_builtins()
