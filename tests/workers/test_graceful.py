"""A single `muxio serve` stops gracefully too: what is in flight finishes, what does not
finish in --graceful-timeout is closed, a second signal closes at once."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workers.helpers import free_port, wait_for


class Served:
    def __init__(self, tmp_path: Path, *argv: str) -> None:
        self.stderr_path = tmp_path / "stderr.log"
        self._stderr = self.stderr_path.open("w")
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "muxio", "serve", *argv, "--host", "127.0.0.1", "--port",
             str(self.port)], stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "serving" in line, (line, self.stderr())

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()
        self._stderr.close()


@pytest.fixture
def idle_http(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path, "http", "--graceful-timeout", "1")
    yield served
    served.close()


def test_what_does_not_finish_within_the_graceful_timeout_is_closed(idle_http: Served) -> None:
    with socket.create_connection(("127.0.0.1", idle_http.port), timeout=30) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # half a request head, never more
        idle_http.process.send_signal(signal.SIGTERM)
        assert idle_http.process.wait(timeout=60) == 0
        assert idle.recv(100) == b""
    assert "graceful timeout (1 s) reached: closing the 1 connections still open" in \
        idle_http.stderr()


def test_a_second_signal_closes_at_once(tmp_path: Path) -> None:
    served = Served(tmp_path, "http", "--graceful-timeout", "600")
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as idle:
            idle.sendall(b"GET / HTTP/1.1\r\n")
            served.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "stops accepting" in served.stderr(), "the drain begins")
            served.process.send_signal(signal.SIGINT)
            assert served.process.wait(timeout=60) == 0
            assert idle.recv(100) == b""
        assert "SIGINT received again: closing http now" in served.stderr()
    finally:
        served.close()


def test_a_request_in_flight_is_answered_with_connection_close(tmp_path: Path) -> None:
    served = Served(tmp_path, "http")
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # the head is not complete yet
            served.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "stops accepting" in served.stderr(), "the drain begins")
            client.sendall(b"\r\n")
            response = b""
            while chunk := client.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nConnection: close\r\n" in response and response.endswith(b"Hello, World!\n")
        assert served.process.wait(timeout=60) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", served.port), timeout=30).close()
    finally:
        served.close()
