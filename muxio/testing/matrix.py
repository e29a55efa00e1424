"""The one parametrisation source for muxio's test and benchmark matrices.

Every handler test asks for `backend` (and `transport`); the lists come from the
registries, so a new backend or transport joins every handler's tests by registration
alone. `MUXIO_TEST_BACKENDS=epoll,poll` narrows the run (e.g. to rerun one backend).
"""

from __future__ import annotations

import os

from muxio.pollers.registry import Registry, default_registry

ENV_TEST_BACKENDS = "MUXIO_TEST_BACKENDS"


def poller_backends(registry: Registry | None = None) -> list[str]:
    """Every backend available here (poller-level contract tests run on all of them)."""
    registry = registry or default_registry()
    return _narrow([spec.name for spec in registry.ordered() if spec.available])


def matrix_backends(registry: Registry | None = None) -> list[str]:
    """Available backends that the handler matrix runs on (aliases excluded)."""
    return _narrow((registry or default_registry()).matrix_names())


def unavailable_backends(registry: Registry | None = None) -> dict[str, str]:
    """{name: reason} for backends that cannot run here (printed by the test session)."""
    registry = registry or default_registry()
    return {spec.name: reason for spec in registry.ordered()
            if (reason := spec.unavailable_reason()) is not None}


def _narrow(names: list[str]) -> list[str]:
    wanted = os.environ.get(ENV_TEST_BACKENDS, "").strip()
    if not wanted:
        return names
    chosen = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in names]
    if unknown:
        raise ValueError(f"{ENV_TEST_BACKENDS} names unavailable backends {unknown}; "
                         f"available: {names}")
    return chosen


def stream_transports() -> list[str]:
    """Stream transports every handler is tested over (TCP, KCP...)."""
    from muxio.transports.registry import STREAM_TRANSPORTS

    wanted = os.environ.get("MUXIO_TEST_TRANSPORTS", "").strip()
    names = list(STREAM_TRANSPORTS)
    return [name for name in names if not wanted or name in wanted.split(",")]
