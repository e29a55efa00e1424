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


def _serve(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "muxio", "serve", *argv],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("service", ["echo", "http", "chat"])
def test_a_port_in_use_is_one_line_and_exit_2(service: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(service, "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"muxio: error: cannot listen on 127.0.0.1:{port}: address already in use (try "
        f"--port, or stop the other server)"]


def test_an_address_of_another_machine_is_one_line_and_exit_2() -> None:
    result = _serve("echo", "--host", "192.0.2.1", "--port", "0")  # TEST-NET-1
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "192.0.2.1 is not an address of this machine (try --host localhost" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_kcp_server_that_served_someone_stops_with_exit_0(backend: str, signum: int) -> None:
    """Stopping a KCP server with a live session exited 2 ('invalid file descriptor -1')."""
    from muxio.loop import Loop
    from muxio.protocols import Protocol
    from muxio.transports.kcp import transport as kcp

    process = subprocess.Popen(
        [sys.executable, "-m", "muxio", "serve", "echo", "--transport", "kcp", "--host",
         "127.0.0.1", "--port", "0", "--backend", backend],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving echo on kcp 127\.0\.0\.1:(\d+)", line)
        assert match, line
        received = bytearray()

        class Client(Protocol):
            def data_received(self, data: bytes) -> None:
                received.extend(data)

        with Loop(backend) as loop:
            future = kcp.connect(Client, "127.0.0.1", int(match.group(1)), loop=loop)
            transport, _ = loop.run_until_complete(future, timeout=30)
            transport.write(b"ping")
            loop.run_until(lambda: received == b"ping", timeout=30)
            process.send_signal(signum)  # the session is live
            assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
            transport.abort()
            for _ in range(3):
                loop.run_once(0)
        assert "echo stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_serve_raises_its_open_file_limit_to_the_hard_one() -> None:
    """Started with a soft limit of 256, `muxio serve` runs with the hard limit (one fd per
    connection: C10K needs no `ulimit -n` first)."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard open-file limit here ({hard}) leaves nothing to raise")

    # A small launcher lowers its own soft limit, then becomes `muxio serve` (exec keeps it).
    launcher = ("import os, resource, sys\n"
                f"resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}))\n"
                "os.execv(sys.executable, [sys.executable, '-m', 'muxio', '-v', 'serve', "
                "'echo', '--host', '127.0.0.1', '--port', '0'])\n")
    process = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert "serving echo" in process.stdout.readline()
        with open(f"/proc/{process.pid}/limits") as limits:
            row = next(line for line in limits if line.startswith("Max open files"))
        assert row.split()[3:5] == [str(hard), str(hard)]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        assert f"open-file limit raised from 256 to {hard}" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
