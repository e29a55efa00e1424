"""`muxio serve http` as a user runs it, and the same handler hosted on asyncio."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http.harness import DEADLINE, REPO, Client, serve_process, wait_readable


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("site")
    (base / "index.html").write_bytes(b"<p>index</p>")
    (base / "large.bin").write_bytes(bytes(range(256)) * 20_000)  # 5 MB: streamed
    return base


def test_serve_http_hello_access_log_and_clean_stop(backend: str) -> None:
    argv = ["-m", "muxio", "serve", "http", "--backend", backend, "--host", "127.0.0.1",
            "--port", "0", "--access-log"]
    with serve_process(argv) as (process, port):
        with Client(port) as client:
            assert client.request("GET", "/").body == b"Hello, World!\n"
            assert client.request("GET", "/nope").status == 404
            assert client.request("HEAD", "/").status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=DEADLINE) == 0
        assert process.stderr is not None and process.stdout is not None
        log = process.stderr.read()
        assert "http stopped" in process.stdout.read()
    assert 'muxio.http.access: 127.0.0.1 "GET / HTTP/1.1" 200 14' in log
    assert '"GET /nope HTTP/1.1" 404' in log
    assert '"HEAD / HTTP/1.1" 200 14' in log


def test_access_log_is_off_by_default(backend: str) -> None:
    argv = ["-m", "muxio", "serve", "http", "--backend", backend, "--host", "127.0.0.1",
            "--port", "0"]
    with serve_process(argv) as (process, port):
        with Client(port) as client:
            assert client.request("GET", "/").status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
        assert process.stderr is not None
        assert "muxio.http.access" not in process.stderr.read()


def test_serve_http_root(backend: str, root: Path) -> None:
    argv = ["-m", "muxio", "serve", "http", "--backend", backend, "--host", "127.0.0.1",
            "--port", "0", "--root", str(root)]
    with serve_process(argv) as (_, port), Client(port) as client:
        assert client.request("GET", "/").body == b"<p>index</p>"
        assert client.request("GET", "/large.bin").body == bytes(range(256)) * 20_000
        assert client.request("GET", "/../etc/passwd").status == 403


@pytest.mark.parametrize("arguments", [["--root", "/nonexistent/dir"],
                                       ["--header-timeout", "0"], ["--max-body", "-1"],
                                       ["--send-timeout", "-5"]])
def test_bad_options_are_reported(arguments: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", "serve", "http", "--port", "0",
                             *arguments], capture_output=True, text=True, timeout=DEADLINE,
                            cwd=REPO, check=False)
    assert result.returncode == 2
    assert "muxio: error: " in result.stderr and arguments[0] in result.stderr


def test_same_handler_on_asyncio(root: Path) -> None:
    """asyncio's transport and loop satisfy Transport and Scheduler: streamed files (with
    pause/resume_writing), pipelining and the header timeout work there too."""
    argv = ["-m", "adapters", "--loop", "asyncio", "--service", "http", "--host", "127.0.0.1",
            "--port", "0", "--root", str(root), "--header-timeout", "0.5"]
    with serve_process(argv) as (_, port):
        with Client(port) as client:
            client.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.read_response().body == b"<p>index</p>"
            assert client.read_response().body == bytes(range(256)) * 20_000
            ranged = client.request("GET", "/large.bin", headers=[("Range", "bytes=-10")])
            assert ranged.status == 206 and len(ranged.body) == 10
        with Client(port) as slow:
            slow.send(b"GET / HTTP/1.1\r\n")
            assert wait_readable(slow.sock, DEADLINE)
            response = slow.read_response()
            assert response.status == 408  # only the header timer answers 408
            assert slow.is_closed_by_server()
