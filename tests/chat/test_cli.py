"""`muxio serve chat` and `muxio chat` as scripts use them: --exec, stdin as a pipe, a
regular file or /dev/null (epoll refuses files: every backend must still run them), exit
statuses, clear errors. Plus the same handler hosted on asyncio."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chat.harness import DEADLINE, REPO, muxio_env, run_chat, serve_chat

LIST_LINE = re.compile(r"^\*?\s+(\d+)\s+127\.0\.0\.1\s+(\d+)$", re.MULTILINE)


def test_exec_commands_and_server_shutdown(backend: str) -> None:
    with serve_chat("--backend", backend, "--heartbeat-interval", "5") as (process, port):
        result = run_chat("127.0.0.1", str(port), "--backend", backend, "--exec", "time",
                          "--exec", "name", "--exec", "list", "--exec", "ping",
                          "--exec", "send 1 to myself")
        assert result.returncode == 1, result.stderr  # the last command failed, on purpose
        out = result.stdout
        assert re.search(r"connected to 127\.0\.0\.1:\d+ as client 1 \(the server sees you "
                         r"as 127\.0\.0\.1:\d+\)", out), out
        assert re.search(r"server time: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d",
                         out), out
        assert "server name: " in out and "1 client(s) connected:" in out
        assert [match[0] for match in LIST_LINE.findall(out)] == ["1"]
        assert re.search(r"pong from 127\.0\.0\.1:\d+ in [\d.]+ ms", out)
        assert "error: send to self (11): cannot send to yourself" in result.stderr
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=DEADLINE) == 0
        assert process.stdout is not None and "chat stopped" in process.stdout.read()


@pytest.mark.parametrize("source", ["pipe", "file", "devnull"])
def test_stdin_of_every_kind_on_every_backend(backend: str, source: str,
                                              tmp_path: Path) -> None:
    """A script on stdin runs the same whatever stdin is and whatever the backend: epoll
    refuses regular files and /dev/null (UnsupportedFileError), so those are read
    directly; pipes are watched by the poller."""
    script = "time\nlist\n\nsend 999 nobody\nname\n"
    with serve_chat("--backend", backend) as (_, port):
        args = ("127.0.0.1", str(port), "--backend", backend)
        if source == "pipe":
            result = run_chat(*args, input_text=script)
        elif source == "file":
            path = tmp_path / "commands.txt"
            path.write_text(script)
            with path.open("rb") as handle:
                result = run_chat(*args, stdin=handle)
        else:
            result = run_chat(*args)  # stdin is /dev/null: connect, then EOF
        if source == "devnull":
            assert result.returncode == 0, result.stderr
            assert "as client 1" in result.stdout
            assert "server time" not in result.stdout
            return
        assert result.returncode == 1, result.stderr  # 'send 999' fails
        lines = result.stdout.splitlines()
        assert lines[0].startswith("connected to")
        assert lines[1].startswith("server time: ")
        assert lines[2] == "1 client(s) connected:"
        assert lines[-1].startswith("server name: ")  # after the failed send: in order
        assert "error: no such client (10): there is no client 999" in result.stderr


def test_two_scripted_clients_exchange_a_message(backend: str) -> None:
    with serve_chat("--backend", backend) as (_, port):
        receiver = subprocess.Popen(
            [sys.executable, "-m", "muxio", "chat", "127.0.0.1", str(port), "--backend",
             backend], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO, env=muxio_env())
        try:
            assert receiver.stdout is not None and receiver.stdin is not None
            assert "as client 1" in receiver.stdout.readline()
            result = run_chat("127.0.0.1", str(port), "--backend", backend,
                              "-e", "send 1 hello from a script: ünïcode \x1b[31m")
            assert result.returncode == 0, result.stderr
            assert "delivered to 1" in result.stdout
            line = receiver.stdout.readline()
            assert "joined from 127.0.0.1" in line
            line = receiver.stdout.readline()
            assert re.match(r"message from 2 \(127\.0\.0\.1:\d+\): hello from a script: "
                            r"ünïcode \\x1b\[31m$", line), line  # escape neutralised
            receiver.stdin.close()  # EOF: the client exits by itself
            assert receiver.wait(timeout=DEADLINE) == 0
        finally:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait()
            for pipe in (receiver.stdin, receiver.stdout, receiver.stderr):
                if pipe is not None:
                    pipe.close()


def test_connect_failure_stops_a_script() -> None:
    with serve_chat() as (process, port):
        process.terminate()
        process.wait(timeout=DEADLINE)
        result = run_chat("127.0.0.1", str(port), "--exec", "time")
    assert result.returncode == 1
    assert f"error: cannot connect to 127.0.0.1:{port}" in result.stderr
    assert "server time" not in result.stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["chat", "127.0.0.1"], "give both HOST and PORT"),
    (["chat", "--timeout", "0"], "--timeout must be > 0"),
    (["chat", "localhost", "notaport"], "PORT must be a number 1-65535, not 'notaport'"),
    (["serve", "chat", "--heartbeat-misses", "1"], "--heartbeat-misses must be >= 2"),
    (["serve", "chat", "--heartbeat-interval", "-1"], "--heartbeat-interval must be"),
    (["serve", "chat", "--max-frame", "10"], "--max-frame must be between"),
    (["serve", "chat", "--hello-timeout", "0"], "--hello-timeout must be a finite number"),
    (["serve", "chat", "--max-ungreeted", "0"], "--max-ungreeted must be >= 1"),
])
def test_bad_options_name_the_flag(argv: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", *argv], capture_output=True,
                            text=True, timeout=DEADLINE, cwd=REPO, env=muxio_env(), check=False,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert f"muxio: error: {message}" in result.stderr


def test_usage_errors_in_a_script_are_reported_in_order() -> None:
    with serve_chat() as (_, port):
        result = run_chat("127.0.0.1", str(port), input_text="send\nsend x hi\nfrobnicate\n"
                          "wait 0\nhelp\nconnect 127.0.0.1 1\nclose\ntime\n")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: usage: send ID TEXT",
        "error: ID must be a client number (see 'list'), not 'x'",
        "error: unknown command 'frobnicate'; type 'help'",
        "error: already connected to 127.0.0.1:" + str(port) + ": 'close' first",
        "error: not connected: use 'connect HOST PORT'",
    ]
    assert "send ID TEXT        forward TEXT to client ID" in result.stdout
    assert f"disconnected from 127.0.0.1:{port}" in result.stdout


def test_kcp_transport_end_to_end() -> None:
    with serve_chat("--transport", "kcp") as (_, port):
        result = run_chat("127.0.0.1", str(port), "--transport", "kcp", "-e", "list")
    assert result.returncode == 0, result.stderr
    assert "1 client(s) connected:" in result.stdout


def test_same_handler_on_asyncio() -> None:
    """asyncio's loop and transports satisfy Scheduler and Transport: the chat handler
    runs there unchanged (python -m adapters)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters", "--loop", "asyncio", "--service", "chat", "--host",
         "127.0.0.1", "--port", "0", "--heartbeat-interval", "5"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO, env=muxio_env())
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving chat" in line, line
        port = int(re.findall(r"127\.0\.0\.1:(\d+)", line)[0])
        result = run_chat("127.0.0.1", str(port), "-e", "time", "-e", "list", "-e",
                          "send 1 self")
        assert "server time: " in result.stdout and "1 client(s) connected:" in result.stdout
        assert "cannot send to yourself" in result.stderr
    finally:
        process.terminate()
        process.wait(timeout=DEADLINE)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_overlong_input_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("send 1 " + "x" * 70_000 + "\ntime\n")
    with serve_chat() as (_, port), path.open("rb") as handle:
        result = run_chat("127.0.0.1", str(port), stdin=handle)
    assert result.returncode == 1
    assert "error: input line longer than 65536 bytes skipped" in result.stderr
    assert "server time: " in result.stdout
