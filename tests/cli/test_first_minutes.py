"""What a new user meets in the first ten minutes, tried as they would: the DNS pair works
together by default, `| head` is quiet, Ctrl-C in the chat client says goodbye, and `-v`
shows one line per connection or query."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

from muxio.cli import resolve
from muxio.cli.services import dns as dns_service
from muxio.cli.services import echo as echo_service
from tests.processes import DEADLINE, REPO, repo_env, run, started

ZONE = str(REPO / "tests" / "dns" / "zones" / "example.com.zone")


def test_resolve_asks_where_serve_dns_listens_by_default() -> None:
    assert f"localhost:{dns_service.DEFAULT_PORT}" == resolve.DEFAULT_SERVER
    assert resolve.servers([resolve.DEFAULT_SERVER]) == ["127.0.0.1:5300"]
    assert resolve.servers(["LOCALHOST", "192.0.2.1:53"]) == ["127.0.0.1", "192.0.2.1:53"]


def test_resolve_localhost_against_serve_dns_with_a_query_log_at_v() -> None:
    with started(["-m", "muxio", "-v", "serve", "dns", "--zone", ZONE, "--port", "0"]) as dns:
        server = f"localhost:{dns.port}"
        answer = run(["-m", "muxio", "resolve", "ns1.example.com", "--server", server,
                      "--short"])
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.split() == ["192.0.2.53"]
        over_tcp = run(["-m", "muxio", "resolve", "example.com", "MX", "--tcp", "--server",
                        server, "--short"])
        assert over_tcp.returncode == 0 and "mail.example.com." in over_tcp.stdout
        status, _, err = dns.interrupt()
    assert status == 0, err
    queries = re.findall(r"INFO muxio\.serve\.dns: (udp|tcp) query from 127\.0\.0\.1 port "
                         r"\d+: (\S+) IN (\w+)", err)
    assert queries == [("udp", "ns1.example.com.", "A"), ("tcp", "example.com.", "MX")], err


def test_resolve_into_a_closed_pipe_exits_quietly() -> None:
    """`muxio resolve ... | head -0`: the reader is gone before the answer is printed."""
    with started(["-m", "muxio", "serve", "dns", "--zone", ZONE, "--port", "0"]) as dns:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "muxio", "resolve", "www.example.com", "--server",
                 f"127.0.0.1:{dns.port}"], stdout=write_end, stderr=subprocess.PIPE,
                text=True, cwd=REPO, env=repo_env(), timeout=DEADLINE, check=False)
        finally:
            os.close(write_end)
    assert result.returncode == resolve.EXIT_BROKEN_PIPE
    assert result.stderr == ""


def test_any_command_into_a_closed_pipe_exits_quietly() -> None:
    """`muxio backends --json | head -2` printed a BrokenPipeError traceback."""
    from muxio.cli.main import EXIT_BROKEN_PIPE

    for command in (["backends", "--json"], ["backends"], ["config"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run([sys.executable, "-m", "muxio", *command],
                                    stdout=write_end, stderr=subprocess.PIPE, text=True,
                                    cwd=REPO, env=repo_env(), timeout=DEADLINE, check=False)
        finally:
            os.close(write_end)
        assert result.stderr == "", command
        # rich's Console handles a broken pipe itself, with exit status 1.
        assert result.returncode in (EXIT_BROKEN_PIPE, 1), command


def test_a_usage_error_is_one_line_naming_the_help_to_read() -> None:
    """argparse's own errors printed the whole usage block (ten lines for serve http) and
    'muxio serve http: error:'; now they are the house's one line."""
    for argv, message in (
            (["serve", "http", "--port", "abc"],
             "muxio: error: argument --port: invalid int value: 'abc' "
             "(see 'muxio serve http --help')"),
            (["serve", "nope"], "muxio: error: argument SERVICE: invalid choice: 'nope'"),
            (["bench"], "muxio: error: the following arguments are required: workload")):
        result = subprocess.run([sys.executable, "-m", "muxio", *argv], capture_output=True,
                                text=True, cwd=REPO, env=repo_env(), timeout=DEADLINE,
                                check=False)
        assert result.returncode == 2, argv
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(message), result.stderr


def test_echo_logs_one_line_per_connection_at_v_only() -> None:
    for verbose in ([], ["-v"]):
        argv = ["-m", "muxio", "serve", "echo", "--host", "127.0.0.1", "--port", "0",
                *verbose]
        with started(argv) as echo:
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", echo.port)) as client:
                    client.sendall(b"hi")
                    assert client.recv(2) == b"hi"
            status, _, err = echo.interrupt()
        assert status == 0, err
        lines = re.findall(r"muxio\.serve\.echo: tcp connection from 127\.0\.0\.1 port \d+",
                           err)
        assert len(lines) == (3 if verbose else 0), err
    assert echo_service.DEFAULT_PORT == 7007


def test_http_logs_one_line_per_connection_at_v() -> None:
    """`serve http -v` logged nothing (its factory was not wrapped like echo's and chat's)."""
    argv = ["-m", "muxio", "serve", "http", "--host", "127.0.0.1", "--port", "0", "-v"]
    with started(argv) as http:
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", http.port)) as client:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert client.recv(12) == b"HTTP/1.1 200"
        status, _, err = http.interrupt()
    assert status == 0, err
    lines = re.findall(r"muxio\.serve\.http: tcp connection from 127\.0\.0\.1 port \d+", err)
    assert len(lines) == 2, err


def test_ctrl_c_in_chat_says_goodbye() -> None:
    argv = ["-m", "muxio", "-v", "serve", "chat", "--host", "127.0.0.1", "--port", "0"]
    with started(argv) as server:
        chat = ["-m", "muxio", "chat", "127.0.0.1", str(server.port)]
        with started(chat, ready="connected", open_stdin=True) as watcher, \
                started(chat, ready="connected", open_stdin=True) as leaver:
            assert "as client 1" in watcher.first_line and "as client 2" in leaver.first_line
            assert watcher.readline().startswith("* client 2 joined")
            status, out, err = leaver.interrupt()
            assert status == 128 + signal.SIGINT, err
            assert out.splitlines() == [f"interrupted: saying goodbye to 127.0.0.1:{server.port}",
                                        f"disconnected from 127.0.0.1:{server.port}"], out
            assert "closed the connection" not in out + err
            assert watcher.readline().strip() == "* client 2 left (bye)"
        status, _, err = server.interrupt()
    assert status == 0
    assert len(re.findall(r"muxio\.serve\.chat: tcp connection from", err)) == 2, err


def test_ctrl_c_before_the_greeting_quits_at_once() -> None:
    """A server that never answers HELLO (a plain TCP listener): with no greeted session
    there is nobody to say goodbye to, so Ctrl-C quits at once."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        process = subprocess.Popen([sys.executable, "-m", "muxio", "chat", "127.0.0.1",
                                    str(port)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=REPO, env=repo_env())
        peer, _ = silent.accept()
        with peer:
            deadline = time.monotonic() + DEADLINE
            while not peer.recv(64):  # the client's HELLO: it is running its loop
                assert time.monotonic() < deadline
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 128 + signal.SIGINT, err
    assert "saying goodbye" not in out


def test_a_command_imports_only_its_own_module() -> None:
    # `muxio backends` must not pay for the bench runners or the DNS compiler; `muxio` alone
    # (and --help) still lists every command.
    probe = ("import sys; from muxio.cli.main import main; code = main(['backends', '--json']);"
             " print(sorted(m for m in sys.modules if m.startswith('muxio.cli.')"
             " and m.count('.') == 2), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=False,
                            timeout=DEADLINE, env=repo_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr
    loaded = result.stderr.strip()
    assert "'muxio.cli.backends'" in loaded
    for other in ("bench", "serve", "chat", "resolve", "connect"):
        assert f"'muxio.cli.{other}'" not in loaded, loaded
    listing = run(["-m", "muxio", "--help"])
    for command in ("backends", "config", "serve", "chat", "resolve", "bench", "connect"):
        assert command in listing.stdout, listing.stdout
