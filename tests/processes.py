"""Programs started as a user would (`python -m muxio ...`, `python examples/x.py`), read
until they say they are ready, and always stopped: shared by the CLI and examples tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 30.0


def repo_env(**extra: str) -> dict[str, str]:
    """The environment with the repository importable (as `pip install -e .` makes it)."""
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1",
            **extra}


class Started:
    """A running program: its first line of output, the port it named, how to stop it."""

    def __init__(self, process: subprocess.Popen[str], first_line: str) -> None:
        self.process = process
        self.first_line = first_line

    @property
    def port(self) -> int:
        """The last number after a ':' in the first line ('... 127.0.0.1:43121 ...')."""
        ports = re.findall(r":(\d+)\b", self.first_line)
        assert ports, f"no port in {self.first_line!r}"
        return int(ports[-1])

    def readline(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def interrupt(self) -> tuple[int, str, str]:
        """Ctrl-C (SIGINT); wait for the exit; (status, rest of stdout, stderr). stdin stays
        open until then (closing it first would race the signal with an EOF)."""
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(timeout=DEADLINE)
        assert self.process.stdout is not None and self.process.stderr is not None
        return status, self.process.stdout.read(), self.process.stderr.read()


@contextmanager
def started(argv: Sequence[str], *, ready: str = "serving", cwd: Path = REPO,
            env: dict[str, str] | None = None, open_stdin: bool = False,
            python: str = sys.executable) -> Iterator[Started]:
    """Run `python ARGV...`; wait for a first stdout line containing `ready`. stdin is
    /dev/null, or with `open_stdin` a pipe that stays open (an idle user)."""
    process = subprocess.Popen([python, *argv],
                               stdin=subprocess.PIPE if open_stdin else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=cwd, env=env or repo_env())
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if ready not in line:
            process.kill()
            _, err = process.communicate(timeout=DEADLINE)
            raise AssertionError(f"{argv} did not start: {line!r}\n{err[-3000:]}")
        yield Started(process, line)
    finally:
        stop(process)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE,
               interval: float = 0.02) -> None:
    """Check another process's state (its log, /proc, its sockets) until `condition` holds;
    fail naming `what` after `timeout` s. Re-checking is the only way here: nothing tells
    this process when another one changed, so it looks again every `interval` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {timeout:g} s")
        time.sleep(interval)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM (SIGKILL if it outlives the deadline), reap, close its pipes."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def run(argv: Sequence[str], *, input_text: str | None = None, cwd: Path = REPO,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python ARGV...` to completion."""
    return subprocess.run([sys.executable, *argv], input=input_text, capture_output=True,
                          text=True, cwd=cwd, env=env or repo_env(), timeout=DEADLINE * 4,
                          check=False)
