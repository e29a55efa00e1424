"""The backend table: auto choice, features, unavailable backends with reasons."""

from __future__ import annotations

import select
import selectors

import pytest

from muxio.errors import BackendUnavailableError, MissingFeatureError, UnknownBackendError
from muxio.pollers import (
    BackendSpec,
    Capabilities,
    Features,
    Registry,
    SelectorsPoller,
    default_registry,
)


def test_auto_prefers_epoll_then_poll_then_select() -> None:
    registry = default_registry()
    order = [spec.name for spec in registry.ordered() if spec.name in ("epoll", "poll", "select")]
    assert order == ["epoll", "poll", "select"]
    expected = "epoll" if hasattr(select, "epoll") else "selectors"
    assert registry.choose().name == expected


def test_auto_with_required_feature_picks_edge_triggered() -> None:
    assert default_registry().choose(features=Features(edge_triggered=True)).name == "epoll-et"


def test_named_backend_missing_a_feature_is_refused_with_a_suggestion() -> None:
    with pytest.raises(MissingFeatureError, match="edge triggering.*epoll-et"):
        default_registry().choose("poll", Features(edge_triggered=True))


def test_unknown_backend_lists_available() -> None:
    with pytest.raises(UnknownBackendError, match="available: epoll, epoll-et, poll, select"):
        default_registry().choose("nope")


def test_selectors2_is_listed_unavailable_with_the_reason() -> None:
    spec = default_registry().get("selectors2")
    reason = spec.unavailable_reason()
    assert reason is not None
    assert "3.10" in reason and "collections.Mapping" in reason
    with pytest.raises(BackendUnavailableError, match="selectors2"):
        default_registry().create("selectors2")


def test_every_available_backend_creates_a_poller_with_its_name() -> None:
    registry = default_registry()
    for name in registry.available_names():
        with registry.create(name) as poller:
            assert poller.name == name
            assert poller.capabilities == registry.get(name).capabilities


def test_adapter_accepts_a_selector_instance_or_class() -> None:
    with SelectorsPoller(selectors.PollSelector()) as from_instance:
        assert isinstance(from_instance.selector, selectors.PollSelector)
    with SelectorsPoller(selectors.SelectSelector, name="mine") as from_class:
        assert from_class.name == "mine"
        assert from_class.capabilities.max_fd == 1024


def test_user_selector_subclass_works() -> None:
    class CountingSelector(selectors.PollSelector):
        calls = 0

        def select(self, timeout: float | None = None) -> list[
                tuple[selectors.SelectorKey, int]]:
            CountingSelector.calls += 1
            return super().select(timeout)

    with SelectorsPoller(CountingSelector) as poller:
        assert poller.poll(0) == []
    assert CountingSelector.calls == 1


def test_registry_rows_are_data_and_names_are_unique() -> None:
    registry = Registry()
    spec = BackendSpec("custom", SelectorsPoller, "test row",
                       Capabilities(), rank=1)
    registry.add(spec)
    with pytest.raises(ValueError, match="already registered"):
        registry.add(spec)
    with pytest.raises(ValueError, match="reserved"):
        registry.add(BackendSpec("auto", SelectorsPoller, "x", Capabilities()))
    assert registry.choose().name == "custom"


def test_unavailable_backend_reason_is_reported_not_raised() -> None:
    registry = Registry()

    def broken_check() -> str | None:
        raise RuntimeError("boom")

    registry.add(BackendSpec("broken", SelectorsPoller, "x", Capabilities(),
                             broken_check))
    assert "boom" in (registry.get("broken").unavailable_reason() or "")
    assert registry.available_names() == []
