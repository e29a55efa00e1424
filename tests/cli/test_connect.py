"""`muxio connect`: a file round-trips intact through an echo server over TCP and KCP, EOF
on stdin ends the session (exit 0), and a refused port is one line and exit 1. The
`transport` fixture (conftest) lists every stream transport."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from muxio.handlers.echo import EchoProtocol
from muxio.testing.server import LoopThread
from muxio.transports.registry import stream_transport

TIMEOUT = 60


@pytest.mark.parametrize("client_backend", ["epoll", "poll"])
def test_a_file_round_trips_through_echo(transport: str, client_backend: str,
                                         tmp_path: Path) -> None:
    spec = stream_transport(transport)
    payload = os.urandom(300_000)
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    with LoopThread("epoll") as runner:
        server = runner.call(lambda loop: spec.serve(EchoProtocol, "127.0.0.1", 0, loop=loop))
        runner.on_close(lambda loop: (server.close(), server.close_clients()))
        with source.open("rb") as stdin:
            result = subprocess.run(
                [sys.executable, "-m", "muxio", "connect", "127.0.0.1", str(server.port),
                 "--transport", transport, "--backend", client_backend],
                stdin=stdin, capture_output=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == payload


def test_a_refused_port_is_one_line_and_exit_1(transport: str) -> None:
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "connect", "127.0.0.1", str(port),
         "--transport", transport], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("muxio: error: ")
    assert "refused" in lines[0].lower()
    assert "Traceback" not in result.stderr


def test_a_bad_port_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", "connect", "127.0.0.1", "70000"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=TIMEOUT, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("muxio: error: port 70000")
