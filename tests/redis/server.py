"""A redis-server of the test's own (free port, no persistence), and a deadline wait on
another process's state: what the tests that talk to a real Redis share."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.processes import stop
from tests.processes import wait_until as wait_for

DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Redis:
    """A redis-server of our own on a free port, without persistence; restartable."""

    def __init__(self, program: str, directory: Path) -> None:
        self.program = program
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT, text=True)
        wait_for(self.answers, f"redis-server on port {self.port}")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
        self.process = None
