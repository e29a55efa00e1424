"""Every program in examples/ started as a user would (the command in its docstring), talked
to, and stopped. (The poller plug-in is installed and shown joining the matrix in
test_fresh_install.py.)"""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
import urllib.request

import pytest

from muxio.testing.matrix import matrix_backends, stream_transports
from tests.processes import DEADLINE, REPO, repo_env, run, started

EXAMPLES = REPO / "examples"


def example(name: str) -> str:
    return str(EXAMPLES / name)


def test_every_example_says_how_to_run_it() -> None:
    programs = sorted(EXAMPLES.glob("*.py")) + sorted(EXAMPLES.glob("*/*/__init__.py"))
    assert len(programs) >= 7, programs
    for path in programs:
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{path.name} has no docstring"
        assert re.search(r"python (-m pytest|examples/|-m muxio)|pip install|pytest", doc), (
            f"{path.name}: the docstring does not say how to run it")


def test_echo_server_on_each_backend(backend: str) -> None:
    with started([example("echo_server.py"), "--backend", backend, "--port", "0"]) as echo:
        assert f"with {backend}" in echo.first_line
        with socket.create_connection(("localhost", echo.port), timeout=DEADLINE) as client:
            client.sendall(b"hello\n")
            assert client.recv(64) == b"hello\n"
        status, _, err = echo.interrupt()
    assert status == 0, err


def test_async_echo_on_each_backend(backend: str) -> None:
    with started([example("async_echo.py"), "--backend", backend, "--port", "0"]) as echo:
        assert f"with {backend}" in echo.first_line
        with socket.create_connection(("localhost", echo.port), timeout=DEADLINE) as client:
            client.sendall(b"hello async\n")
            assert client.recv(64) == b"hello async\n"
        status, _, err = echo.interrupt()
    assert status == 0, err


def test_kv_store_one_protocol_over_tcp_and_kcp() -> None:
    with started([example("kv_store.py"), "--port", "0", "serve"]) as kv:
        ports = dict(re.findall(r"(tcp|kcp) on 127\.0\.0\.1:(\d+)", kv.first_line))
        assert set(ports) == {"tcp", "kcp"}, kv.first_line
        over_tcp = run([example("kv_store.py"), "--port", ports["tcp"], "ask",
                        "SET colour blue", "GET colour", "FLY away"])
        assert over_tcp.stdout.splitlines() == [
            "OK", "VALUE blue", "ERROR usage: SET key value | GET key | DEL key"], over_tcp
        # The options go before the command (above) or after it, as the docstring has them.
        over_kcp = run([example("kv_store.py"), "ask", "--port", ports["kcp"], "--transport",
                        "kcp", "GET colour", "DEL colour", "GET colour"])
        assert over_kcp.stdout.splitlines() == ["VALUE blue", "OK", "NOT_FOUND"], over_kcp
        with socket.create_connection(("127.0.0.1", int(ports["tcp"]))) as hostile:
            hostile.sendall(b"SET " + b"x" * 5000)
            assert hostile.recv(64) == b"ERROR line too long\n"
            assert hostile.recv(64) == b""
        status, _, err = kv.interrupt()
    assert status == 0, err


def test_http_app_routes_and_static_files() -> None:
    with started([example("http_app.py"), "--port", "0"]) as http:
        base = f"http://127.0.0.1:{http.port}"
        with urllib.request.urlopen(f"{base}/hello", timeout=DEADLINE) as response:
            assert response.read().startswith(b"Hello from muxio on ")
        posted = urllib.request.Request(f"{base}/echo", data=b"some bytes", method="POST")
        with urllib.request.urlopen(posted, timeout=DEADLINE) as response:
            assert response.read() == b"some bytes"
        with urllib.request.urlopen(f"{base}/", timeout=DEADLINE) as response:
            assert response.read() == (EXAMPLES / "static" / "index.html").read_bytes()
            assert response.headers["Content-Type"].startswith("text/html")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/missing.html", timeout=DEADLINE)
        assert missing.value.code == 404
        missing.value.close()
        status, _, err = http.interrupt()
    assert status == 0, err


def test_chat_script_talks_to_a_person_at_muxio_chat() -> None:
    serve = ["-m", "muxio", "serve", "chat", "--host", "127.0.0.1", "--port", "0"]
    with started(serve) as server:
        person = ["-m", "muxio", "chat", "127.0.0.1", str(server.port)]
        with started(person, ready="connected", open_stdin=True) as receiver:
            assert "as client 1" in receiver.first_line
            script = run([example("chat_script.py"), "--port", str(server.port), "--to", "1",
                          "--text", "hello from a script"])
            assert script.returncode == 0, script.stderr
            lines = script.stdout.splitlines()
            assert lines[0] == "connected as client 2"
            assert lines[1].startswith("server time: ")
            assert lines[2:] == ["clients: 1 2", "delivered to 1"]
            seen = [receiver.readline().strip() for _ in range(3)]
            assert seen[0].startswith("* client 2 joined")
            assert re.fullmatch(r"message from 2 \(127\.0\.0\.1:\d+\): hello from a script",
                                seen[1]), seen
            assert seen[2] == "* client 2 left (bye)"
        nobody = run([example("chat_script.py"), "--port", str(server.port), "--to", "99"])
        assert nobody.returncode == 1 and "not delivered" in nobody.stderr


def test_resolver_from_code() -> None:
    serve = ["-m", "muxio", "serve", "dns", "--zone", example("example.zone"), "--port", "0"]
    with started(serve) as dns:
        result = run([example("resolve.py"), "www.example.test", "A", "AAAA", "MX",
                      "--server", f"127.0.0.1:{dns.port}"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["A: 192.0.2.80", "AAAA: 2001:db8::80",
                                          "MX: no records"]


def test_users_own_handler_on_every_backend_and_transport() -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "test_my_handler.py", "-v",
                             "-p", "no:xdist"], capture_output=True, text=True, cwd=EXAMPLES,
                            env=repo_env(), timeout=DEADLINE * 8, check=False)
    cases = len(matrix_backends()) * len(stream_transports()) * 2
    assert f"{cases} passed" in result.stdout, result.stdout[-3000:] + result.stderr


def test_bench_my_handler_on_two_backends() -> None:
    backends = matrix_backends()[:2]
    result = run([example("bench_echo.py"), "--backends", ",".join(backends), "--rounds", "1",
                  "--duration", "0.3", "--connections", "2"])
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^echo/(\S+)\s+([\d,]+)\s+([\d.]+)$", result.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == backends, result.stdout
    assert all(int(row[1].replace(",", "")) > 0 for row in rows)
