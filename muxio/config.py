"""Where settings come from, and which source wins.

Backend precedence (first that is set wins):

    1. API argument        Loop(backend="poll"), serve(..., backend="poll")
    2. CLI flag            muxio serve echo --backend poll
    3. environment         MUXIO_BACKEND=poll
    4. config file         muxio.toml (`backend = "poll"`) or pyproject.toml [tool.muxio],
                           searched from the current directory upward
    5. default             auto: the best backend available here

Config files: in each directory from the current one upward, `muxio.toml` is read if
present; otherwise a `pyproject.toml` with a `[tool.muxio]` table. The search stops at
the first directory holding a `pyproject.toml` (the project root) even without that table.

Worker count (`muxio serve --workers`) follows the same order without the API step:
`--workers` > `MUXIO_WORKERS` > `workers = N` in the config file > 1. `auto` means one
worker per CPU this process may run on.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from muxio.errors import BackendUnavailableError, ConfigError, UnknownBackendError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

AUTO = "auto"
"""The backend name that means: the best one available here."""
ENV_BACKEND = "MUXIO_BACKEND"
ENV_WORKERS = "MUXIO_WORKERS"
MAX_WORKERS = 256
"""More worker processes than this is a typo, not a plan (each is a whole interpreter)."""
CONFIG_FILE = "muxio.toml"
PYPROJECT = "pyproject.toml"
SETTINGS = ("backend", "workers")
"""The keys a config file may set; any other is refused (a typo must not go unnoticed)."""


@dataclass(frozen=True)
class ConfigFile:
    """Settings read from one file, with where they came from."""

    path: Path
    settings: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"[tool.muxio] in {self.path}" if self.path.name == PYPROJECT else str(self.path)


def find_config_file(start: Path | None = None) -> ConfigFile | None:
    """The nearest muxio.toml or [tool.muxio] table, from `start` (cwd) upward."""
    directory = (start or Path.cwd()).resolve()
    for folder in (directory, *directory.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return _checked(ConfigFile(candidate, _read_toml(candidate)))
        pyproject = folder / PYPROJECT
        if pyproject.is_file():
            tool = _read_toml(pyproject).get("tool", {})
            section = tool.get("muxio") if isinstance(tool, dict) else None
            if isinstance(section, dict):
                return _checked(ConfigFile(pyproject, section))
            return None
    return None


def _checked(config: ConfigFile) -> ConfigFile:
    for key in config.settings:
        if key not in SETTINGS:
            close = difflib.get_close_matches(str(key), SETTINGS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{config.label}: unknown setting {key!r}; {hint}muxio reads "
                              f"{', '.join(SETTINGS)}")
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix or remove it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


class NamedSpec(Protocol):
    @property
    def name(self) -> str: ...


SpecT = TypeVar("SpecT", bound=NamedSpec)
SpecT_co = TypeVar("SpecT_co", bound=NamedSpec, covariant=True)


class BackendTable(Protocol[SpecT_co]):
    """What settings need of a backend registry (muxio.pollers.registry.Registry is one):
    config sits on the ground floor and is given the table, it does not import it."""

    def choose(self, name: str, features: Any = None) -> SpecT_co: ...

    def available_names(self) -> list[str]: ...


@dataclass(frozen=True)
class BackendChoice(Generic[SpecT]):
    """The backend to use, and the source that decided it (for `muxio config`)."""

    name: str
    """Concrete backend name (never 'auto')."""
    source: str
    """e.g. 'API argument', '--backend', 'MUXIO_BACKEND', 'muxio.toml at …', 'auto'."""
    requested: str
    """What that source said ('auto' resolves to `name`)."""
    spec: SpecT


def resolve_backend(api: str | None = None, *, registry: BackendTable[SpecT],
                    cli: str | None = None, env: Mapping[str, str] | None = None,
                    cwd: Path | None = None, features: Any = None) -> BackendChoice[SpecT]:
    """Apply the precedence above and validate the winner against `registry`."""
    env = os.environ if env is None else env
    requested, source = _first_setting(api, cli, env, cwd)
    label = _describe_source(source, requested)
    try:
        spec = registry.choose(requested, features)
    except UnknownBackendError:
        raise UnknownBackendError(
            f"{label} is not a backend; available: "
            f"{', '.join(registry.available_names())}") from None
    except BackendUnavailableError as exc:
        raise type(exc)(f"{label}: {exc}") from None
    return BackendChoice(name=spec.name, source=source, requested=requested, spec=spec)


def _first_setting(api: str | None, cli: str | None, env: Mapping[str, str],
                   cwd: Path | None) -> tuple[str, str]:
    if api is not None:
        return _clean(api, "API argument backend"), "API argument"
    if cli is not None:
        return _clean(cli, "--backend"), "--backend"
    env_value = env.get(ENV_BACKEND)
    if env_value is not None and env_value.strip():
        return _clean(env_value, ENV_BACKEND), ENV_BACKEND
    config = find_config_file(cwd)
    if config is not None and "backend" in config.settings:
        value = config.settings["backend"]
        if not isinstance(value, str):
            raise ConfigError(f"backend in {config.label} must be a string, "
                              f"got {value!r}")
        return _clean(value, f"backend in {config.label}"), config.label
    return AUTO, "auto"


def _clean(value: str, where: str) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise ConfigError(f"{where} is empty; give a backend name or 'auto'")
    return cleaned


def _describe_source(source: str, requested: str) -> str:
    if source == "API argument":
        return f"backend={requested!r} (API argument)"
    if source == "--backend":
        return f"--backend {requested!r}"
    if source == ENV_BACKEND:
        return f"{ENV_BACKEND}={requested!r}"
    if source == "auto":
        return "auto"
    return f"backend = {requested!r} in {source}"


@dataclass(frozen=True)
class WorkersChoice:
    """How many worker processes `muxio serve` runs, and the source that decided it."""

    count: int
    source: str
    """'--workers', 'MUXIO_WORKERS', the config file's label, or 'default'."""
    requested: str
    """What that source said ('auto' resolves to `count`)."""


def resolve_workers(cli: str | None = None, *, env: Mapping[str, str] | None = None,
                    cwd: Path | None = None) -> WorkersChoice:
    """--workers > MUXIO_WORKERS > `workers` in muxio.toml / [tool.muxio] > 1."""
    env = os.environ if env is None else env
    if cli is not None:
        return _workers(cli, "--workers", "--workers")
    env_value = env.get(ENV_WORKERS)
    if env_value is not None and env_value.strip():
        return _workers(env_value, ENV_WORKERS, ENV_WORKERS)
    config = find_config_file(cwd)
    if config is not None and "workers" in config.settings:
        value = config.settings["workers"]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"workers in {config.label} must be a number or \"auto\", "
                              f"got {value!r}")
        return _workers(str(value), config.label, f"workers in {config.label}")
    return WorkersChoice(1, "default", "1")


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _workers(value: str, source: str, where: str) -> WorkersChoice:
    text = value.strip().lower()
    if text == AUTO:
        return WorkersChoice(cpu_count(), source, AUTO)
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(f"{where} {value.strip()!r} is not a number; give a count of "
                          f"worker processes or 'auto' (one per CPU)") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigError(f"{where} {count} is out of range: give 1 to {MAX_WORKERS} "
                          f"(or 'auto' for one per CPU)")
    return WorkersChoice(count, source, text)
