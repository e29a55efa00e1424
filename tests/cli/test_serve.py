"""`muxio serve echo` as a user runs it: logs where and on what it serves, stops cleanly."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import pytest


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_echo_reports_backend_and_stops_cleanly(backend: str, signum: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "muxio", "serve", "echo", "--port", "0", "--backend", backend],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving echo on tcp 127\.0\.0\.1:(\d+).* with backend (\S+) "
                          r"\(decided by --backend\)", line)
        assert match, line
        assert match.group(2) == backend
        port = int(match.group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client, \
                socket.create_connection(("::1", port), timeout=30) as client6:
            client.sendall(b"ping")
            assert client.recv(10) == b"ping"
            client6.sendall(b"ping6")
            assert client6.recv(10) == b"ping6"
            process.send_signal(signum)
            assert process.wait(timeout=30) == 0
            assert client.recv(10) == b""  # the server closed its connections
        assert "echo stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_serve_rejects_a_bad_backend_with_the_reason() -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", "serve", "echo", "--backend", "epol"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--backend 'epol' is not a backend; available:" in result.stderr


def test_version_and_python_m() -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", "--version"], capture_output=True,
                            text=True, timeout=60, check=True)
    assert re.fullmatch(r"muxio \d+\.\d+\.\d+\n", result.stdout)
