"""The README's quick start, as a new user follows it."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from tests.processes import DEADLINE, REPO, started

README = (REPO / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


def test_first_command_installs_only_what_the_server_needs_in_a_venv() -> None:
    first, tests = blocks("sh")[:2]
    assert first.strip() == "python -m pip install -e . && muxio serve http --port 8080"
    assert "[dev" in tests and "python -m pytest" in tests
    assert "python -m venv .venv" in README.split(first)[0]
    assert ".venv/" in (REPO / ".gitignore").read_text().splitlines()


def test_the_python_example_runs(tmp_path: Path) -> None:
    (source,) = blocks("python")
    assert 'backend="poll"' in source
    program = tmp_path / "readme_echo.py"
    program.write_text(source.replace("7007", "0"))  # any free port on a shared machine
    with started([str(program)], cwd=tmp_path) as echo:
        assert "with poll" in echo.first_line
        with socket.create_connection(("localhost", echo.port), timeout=DEADLINE) as client:
            client.sendall(b"from the README")
            assert client.recv(64) == b"from the README"
        status, _, err = echo.interrupt()
    assert status == 0, err
