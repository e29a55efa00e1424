"""The worker count's precedence and bounds, and the command line a worker is given."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from muxio.cli.main import build_parser
from muxio.cli.workers import worker_argv
from muxio.config import MAX_WORKERS, cpu_count, resolve_workers
from muxio.errors import ConfigError

NO_ENV: dict[str, str] = {}


def test_default_is_one_without_any_setting(tmp_path: Path) -> None:
    choice = resolve_workers(None, env=NO_ENV, cwd=tmp_path)
    assert (choice.count, choice.source) == (1, "default")


def test_flag_over_environment_over_file(tmp_path: Path) -> None:
    (tmp_path / "muxio.toml").write_text("workers = 3\n")
    assert resolve_workers(None, env=NO_ENV, cwd=tmp_path).count == 3
    assert resolve_workers(None, env=NO_ENV, cwd=tmp_path).source == str(
        tmp_path / "muxio.toml")
    from_env = resolve_workers(None, env={"MUXIO_WORKERS": "2"}, cwd=tmp_path)
    assert (from_env.count, from_env.source) == (2, "MUXIO_WORKERS")
    from_flag = resolve_workers("4", env={"MUXIO_WORKERS": "2"}, cwd=tmp_path)
    assert (from_flag.count, from_flag.source) == (4, "--workers")


def test_pyproject_table_and_auto(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.muxio]\nworkers = "auto"\n')
    choice = resolve_workers(None, env=NO_ENV, cwd=tmp_path)
    assert choice.count == cpu_count() and choice.requested == "auto"
    assert "[tool.muxio]" in choice.source


@pytest.mark.parametrize(("value", "message"), [
    ("0", "--workers 0 is out of range: give 1 to 256"),
    (str(MAX_WORKERS + 1), f"--workers {MAX_WORKERS + 1} is out of range"),
    ("two", "--workers 'two' is not a number"),
    ("", "--workers '' is not a number"),
])
def test_bad_counts_say_what_to_give(value: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_workers(value, env=NO_ENV, cwd=tmp_path)


@pytest.mark.parametrize("text", ["workers = true", "workers = 1.5", "workers = [2]"])
def test_a_bad_type_in_the_file_names_the_file(text: str, tmp_path: Path) -> None:
    (tmp_path / "muxio.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=r"workers in .*muxio.toml must be a number or "
                                          r"\"auto\"|workers in .*muxio.toml .* not a number"):
        resolve_workers(None, env=NO_ENV, cwd=tmp_path)


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


_COMPARED_AWAY = {"workers", "reuse_port", "func", "service_module", "service_parser"}


@pytest.mark.parametrize("argv", [
    ["serve", "echo", "--port", "7007", "--workers", "2"],
    ["-vv", "serve", "http", "--host", "", "--port", "8080", "--root", "/tmp", "--access-log",
     "--keepalive-timeout", "0.25", "--backend", "poll", "--backlog", "64",
     "--graceful-timeout", "3.5", "--workers", "auto"],
    ["serve", "dns", "--zone", "a.zone", "--zone", "b.zone", "--port", "5300",
     "--cache-size", "0", "--workers", "2"],
    ["serve", "chat", "--transport", "kcp", "--heartbeat-interval", "2.5", "--port", "7008",
     "--max-clients", "9", "--workers", "3"],
])
def test_a_worker_gets_the_same_options_with_one_worker_and_reuse_port(
        argv: list[str]) -> None:
    original = _parse(argv)
    rebuilt = worker_argv(original.service_parser, original)
    assert rebuilt[-3:] == ["--workers", "1", "--reuse-port"]
    again = _parse(rebuilt)
    assert (again.workers, again.reuse_port) == ("1", True)
    assert {key: value for key, value in vars(again).items() if key not in _COMPARED_AWAY} == \
        {key: value for key, value in vars(original).items() if key not in _COMPARED_AWAY}
