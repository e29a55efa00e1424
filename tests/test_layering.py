"""The architecture's import rules, checked on the source (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "muxio"

# floor of each top-level module/package; a module may import only its floor or below.
FLOORS = {
    "errors": 0, "futures": 0, "protocols": 0,
    "config": 0,  # given the backend registry to validate names against, imports none
    "pollers": 1, "loop": 2, "transports": 3, "handlers": 4, "aio": 4,
    "api": 4,  # the top-level API: serve/connect over the transport registry
    "testing": 5, "cli": 5, "bench": 5, "__main__": 5,
    "__init__": 5,  # re-exports the API (lazily: `import muxio.protocols` stays cheap)
}
HANDLER_ALLOWED = {"muxio.protocols", "muxio.futures", "muxio.errors", "muxio.handlers"}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [name for name in names if name == "muxio" or name.startswith("muxio.")]


def floor_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in FLOORS:
        pytest.fail(f"muxio.{top} has no floor in tests/test_layering.py: add it")
    return FLOORS[top]


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_handlers_import_only_the_api() -> None:
    offenders = []
    for path in (PACKAGE / "handlers").rglob("*.py"):
        for name in imports_of(path):
            if not any(name == allowed or name.startswith(allowed + ".")
                       for allowed in HANDLER_ALLOWED):
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not offenders, "handlers must see only muxio.protocols:\n" + "\n".join(offenders)


def test_every_module_imports_only_its_floor_or_below() -> None:
    offenders = []
    for path in modules():
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        own = floor_of(".".join(relative.parts))
        for name in imports_of(path):
            if floor_of(name) > own:
                offenders.append(f"{relative} (floor {own}) imports {name} "
                                 f"(floor {floor_of(name)})")
    assert not offenders, "\n".join(offenders)


def test_pollers_know_nothing_above_them() -> None:
    for path in (PACKAGE / "pollers").rglob("*.py"):
        for name in imports_of(path):
            assert floor_of(name) <= 1, f"{path.name} imports {name}"


def test_aio_sits_beside_handlers() -> None:
    """muxio.aio (floor 4) uses the loop and the transports; it and the handlers never
    import each other, and nothing below floor 4 imports it (the floor rule above)."""
    offenders = []
    for path in (PACKAGE / "aio").rglob("*.py"):
        offenders += [f"{path.name} imports {name}" for name in imports_of(path)
                      if name.startswith("muxio.handlers")]
    for path in (PACKAGE / "handlers").rglob("*.py"):
        offenders += [f"{path.name} imports {name}" for name in imports_of(path)
                      if name.startswith("muxio.aio")]
    assert not offenders, "\n".join(offenders)


def test_the_runtime_never_imports_the_test_helpers() -> None:
    """muxio.testing is for tests (fake clock, stress, conformance); nothing a user runs
    (the CLI, the bench, the loop) may depend on it."""
    offenders = [f"{path.relative_to(PACKAGE.parent)} imports {name}"
                 for path in modules() if "testing" not in path.relative_to(PACKAGE).parts
                 for name in imports_of(path) if name.startswith("muxio.testing")]
    assert not offenders, "\n".join(offenders)
