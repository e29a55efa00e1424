"""Backend choice precedence and the error message of each source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from muxio.config import find_config_file, resolve_backend
from muxio.errors import BackendUnavailableError, ConfigError, UnknownBackendError
from muxio.loop import Loop
from muxio.pollers.registry import default_registry

REGISTRY = default_registry()

NO_ENV: dict[str, str] = {}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_default_is_auto(tmp_path: Path) -> None:
    choice = resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=tmp_path)
    assert choice.source == "auto"
    assert choice.requested == "auto"
    assert choice.name == "epoll"


def test_muxio_toml(tmp_path: Path) -> None:
    write(tmp_path / "muxio.toml", 'backend = "poll"\n')
    choice = resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=tmp_path)
    assert (choice.name, choice.source) == ("poll", str(tmp_path / "muxio.toml"))


def test_pyproject_tool_muxio_found_from_a_subdirectory(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname="x"\n[tool.muxio]\nbackend = "select"\n')
    sub = tmp_path / "src" / "deep"
    sub.mkdir(parents=True)
    choice = resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=sub)
    assert choice.name == "select"
    assert "[tool.muxio]" in choice.source


def test_muxio_toml_wins_over_pyproject_in_the_same_directory(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.muxio]\nbackend = "select"\n')
    write(tmp_path / "muxio.toml", 'backend = "poll"\n')
    assert resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=tmp_path).name == "poll"


def test_pyproject_without_table_stops_the_search(tmp_path: Path) -> None:
    write(tmp_path / "muxio.toml", 'backend = "poll"\n')
    project = tmp_path / "project"
    write(project / "pyproject.toml", '[project]\nname = "x"\n')
    assert find_config_file(project) is None
    assert resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=project).source == "auto"


def test_env_beats_config_file(tmp_path: Path) -> None:
    write(tmp_path / "muxio.toml", 'backend = "poll"\n')
    choice = resolve_backend(registry=REGISTRY, env={"MUXIO_BACKEND": "select"}, cwd=tmp_path)
    assert (choice.name, choice.source) == ("select", "MUXIO_BACKEND")


def test_cli_beats_env(tmp_path: Path) -> None:
    choice = resolve_backend(registry=REGISTRY, cli="epoll-et",
                             env={"MUXIO_BACKEND": "select"}, cwd=tmp_path)
    assert (choice.name, choice.source) == ("epoll-et", "--backend")


def test_api_argument_beats_everything(tmp_path: Path) -> None:
    write(tmp_path / "muxio.toml", 'backend = "select"\n')
    choice = resolve_backend("poll", registry=REGISTRY, cli="epoll-et",
                             env={"MUXIO_BACKEND": "select"}, cwd=tmp_path)
    assert (choice.name, choice.source) == ("poll", "API argument")


def test_loop_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUXIO_BACKEND", "select")
    with Loop() as loop:
        assert loop.backend == "select"
    with Loop("poll") as loop:
        assert loop.backend == "poll"


def test_env_error_names_the_variable_and_lists_backends(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError) as info:
        resolve_backend(registry=REGISTRY, env={"MUXIO_BACKEND": "epol"}, cwd=tmp_path)
    assert str(info.value).startswith(
        "MUXIO_BACKEND='epol' is not a backend; available: epoll, epoll-et, poll, select, "
        "selectors")


def test_cli_error_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError, match=r"^--backend 'kqeue' is not a backend"):
        resolve_backend(registry=REGISTRY, cli="kqeue", env=NO_ENV, cwd=tmp_path)


def test_api_error_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError, match=r"backend='x' \(API argument\)"):
        resolve_backend("x", registry=REGISTRY, env=NO_ENV, cwd=tmp_path)


def test_file_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "muxio.toml", 'backend = "nope"\n')
    with pytest.raises(UnknownBackendError, match=f"backend = 'nope' in {path}"):
        resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=tmp_path)


def test_file_with_wrong_type(tmp_path: Path) -> None:
    write(tmp_path / "muxio.toml", "backend = 3\n")
    with pytest.raises(ConfigError, match="must be a string"):
        resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=tmp_path)


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "muxio.toml", "backend = \n")
    with pytest.raises(ConfigError, match=f"{path} is not valid TOML"):
        resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=tmp_path)


def test_unavailable_backend_says_why(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"MUXIO_BACKEND='selectors2'.*3\.10"):
        resolve_backend(registry=REGISTRY, env={"MUXIO_BACKEND": "selectors2"}, cwd=tmp_path)


def test_empty_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--backend is empty"):
        resolve_backend(registry=REGISTRY, cli=" ", env=NO_ENV, cwd=tmp_path)


def test_muxio_config_command_shows_the_deciding_source(tmp_path: Path) -> None:
    write(tmp_path / "muxio.toml", 'backend = "poll"\n')
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run([sys.executable, "-m", "muxio", "config"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    assert "backend poll, decided by" in result.stdout
    assert "muxio.toml" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "muxio", "config"], cwd=tmp_path,
                         env={**env, "MUXIO_BACKEND": "epol"}, capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode == 2
    assert "MUXIO_BACKEND='epol' is not a backend" in bad.stderr


def test_unknown_setting_in_the_file_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path / "muxio.toml", 'bakend = "poll"\n')
    with pytest.raises(ConfigError, match=rf"{path}: unknown setting 'bakend'; did you mean "
                                          r"'backend'\? muxio reads backend, workers"):
        resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=tmp_path)
    write(tmp_path / "pyproject.toml", '[tool.muxio]\ncolour = "blue"\n')
    (tmp_path / "muxio.toml").unlink()
    with pytest.raises(ConfigError, match=r"\[tool.muxio\] in .*: unknown setting 'colour'; "
                                          r"muxio reads"):
        resolve_backend(registry=REGISTRY, env=NO_ENV, cwd=tmp_path)


def test_unknown_setting_is_one_line_from_the_cli(tmp_path: Path) -> None:
    write(tmp_path / "muxio.toml", 'bakend = "poll"\n')
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run([sys.executable, "-m", "muxio", "config"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("muxio: error: ") and "unknown setting 'bakend'" in (
        result.stderr)
