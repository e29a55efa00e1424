"""The interactive client driven as a person would: at a terminal (pexpect's pty), and in
tmux to check what the screen really shows when a message arrives mid-typing."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from muxio.handlers.chat import ChatServer
from muxio.testing.server import LoopThread
from muxio.transports.registry import stream_transport
from tests.chat.harness import DEADLINE, REPO, muxio_env
from tests.tools import require_module, require_tool

CHAT = [sys.executable, "-m", "muxio", "chat"]


@contextmanager
def chat_server(backend: str, transport: str = "tcp") -> Iterator[tuple[ChatServer, int]]:
    """A chat server in a loop thread of this process (so the test can look at its table)."""
    with LoopThread(backend) as runner:
        chat = runner.call(ChatServer)
        spec = stream_transport(transport)
        server = runner.call(lambda loop: spec.serve(chat.protocol_factory, "127.0.0.1", 0,
                                                     loop=loop))

        def stop(loop: object) -> None:
            chat.close()
            server.close()
            shutdown = getattr(server, "shutdown", None)
            if shutdown is not None:
                shutdown()

        runner.on_close(stop)
        yield chat, int(server.port)


def need_pexpect() -> Any:
    """The pexpect module; skipped with the install command (a failure under CI=true)."""
    require_module("pexpect", "pexpect")
    import pexpect  # type: ignore[import-untyped]

    return pexpect


def spawn(*args: str, backend: str) -> Any:
    pexpect = need_pexpect()
    child = pexpect.spawn(CHAT[0], [*CHAT[1:], *args, "--backend", backend], cwd=str(REPO),
                          env=muxio_env(), encoding="utf-8", timeout=DEADLINE,
                          dimensions=(30, 120))
    child.logfile_read = io.StringIO()  # everything the terminal received, for screen()
    return child


def screen(raw: str) -> list[str]:
    """What a terminal shows for the client's output: the few controls it uses (CR,
    erase-line, newline, backspace) applied to a grid of lines."""
    lines = [""]
    column = 0
    for token in re.findall(r"\x1b\[K|\x1b\[H\x1b\[2J|\r|\n|\x08|[^\r\n\x08\x1b]+|\x1b",
                            raw):
        line = lines[-1]
        if token == "\r":
            column = 0
        elif token == "\n":
            lines.append("")
            column = 0
        elif token == "\x1b[K":
            lines[-1] = line[:column]
        elif token == "\x08":
            column = max(0, column - 1)
        elif not token.startswith("\x1b"):
            lines[-1] = line[:column] + token + line[column + len(token):]
            column += len(token)
    return lines


def test_two_people_chat(backend: str) -> None:
    """Connect, list, send to another client, see the message appear there while that
    person is typing (their half-typed line survives), then exit."""
    pexpect = need_pexpect()
    with chat_server(backend) as (chat, port):
        alice = spawn(backend=backend)
        bob = None
        try:
            alice.expect_exact("chat> ")
            alice.sendline(f"connect 127.0.0.1 {port}")
            alice.expect(r"as client (\d+) ")
            alice_id = int(alice.match.group(1))
            bob = spawn("127.0.0.1", str(port), backend=backend)
            bob.expect(r"as client (\d+) ")
            bob_id = int(bob.match.group(1))
            alice.expect_exact(f"* client {bob_id} joined from 127.0.0.1")
            alice.expect_exact(f"chat#{alice_id}> ")

            alice.sendline("list")
            alice.expect_exact("2 client(s) connected:")
            alice.expect(rf"\*\s+{alice_id}\s+127\.0\.0\.1\s+\d+")
            alice.expect(rf"\s+{bob_id}\s+127\.0\.0\.1\s+\d+")

            bob.expect_exact(f"chat#{bob_id}> ")
            bob.send("tim")  # half a command, not yet Enter
            bob.expect_exact("tim")
            alice.sendline(f"send {bob_id} hello Bob, how are you?")
            alice.expect_exact(f"delivered to {bob_id}")
            bob.expect(rf"message from {alice_id} \(127\.0\.0\.1:\d+\): hello Bob, how are "
                       rf"you\?")
            bob.expect_exact(f"chat#{bob_id}> tim")  # the prompt and typed text, redrawn
            shown = screen(bob.logfile_read.getvalue())
            assert shown[-1] == f"chat#{bob_id}> tim"
            assert shown[-2].startswith(f"message from {alice_id} ")
            bob.sendline("e")
            bob.expect(r"server time: \d{4}-")

            alice.sendline("exit")
            alice.expect(pexpect.EOF)
            bob.expect_exact(f"* client {alice_id} left (bye)")
            bob.sendcontrol("d")  # Ctrl-D on an empty line: exit
            bob.expect(pexpect.EOF)
        finally:
            for child in (alice, bob):
                if child is not None:
                    child.close(force=True)
        assert alice.exitstatus == 0 and bob is not None and bob.exitstatus == 0
        assert chat.client_ids() == []


def test_line_editing_keys(backend: str) -> None:
    pexpect = need_pexpect()
    with chat_server(backend) as (_, port):
        child = spawn("127.0.0.1", str(port), backend=backend)
        try:
            child.expect(r"chat#1> ")
            child.send("lsit\x7f\x7f\x7fist")  # typo, three backspaces, fixed
            child.send("\x1b[A")  # an arrow key: swallowed, not inserted
            child.send("\r")
            child.expect_exact("1 client(s) connected:")
            child.send("garbage words\x17\x15help\n")  # Ctrl-W, Ctrl-U, then a command
            child.expect_exact("connect HOST PORT")
            child.sendcontrol("c")  # interrupt: exits, terminal restored
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 128 + 2


def test_screen_in_tmux(backend: str) -> None:
    """The rendered screen (tmux's own terminal emulator): a message arriving while the
    user types shows above the prompt, and the half-typed line is intact below it."""
    pexpect = need_pexpect()
    tmux = require_tool("tmux", "tmux")
    socket_name = f"muxio-chat-test-{os.getpid()}-{backend}"
    with chat_server(backend) as (_, port):
        command = " ".join([*CHAT, "127.0.0.1", str(port), "--backend", backend])
        subprocess.run([tmux, "-L", socket_name, "-f", "/dev/null", "new-session", "-d",
                        "-s", "chat", "-x", "100", "-y", "20", "-c", str(REPO),
                        f"env PYTHONPATH={REPO} {command}"], check=True, timeout=DEADLINE,
                       env={**os.environ, "TERM": "xterm"})
        # tmux needs to know the terminal it draws on (CI may run without TERM).
        view = pexpect.spawn(tmux, ["-L", socket_name, "attach", "-t", "chat"],
                             env={**os.environ, "TERM": "xterm"}, encoding="utf-8",
                             timeout=DEADLINE, dimensions=(20, 100))
        try:
            view.expect(r"as client (\d+) ")
            me = view.match.group(1)
            view.expect_exact(f"chat#{me}>")
            subprocess.run([tmux, "-L", socket_name, "send-keys", "-t", "chat", "hel"],
                           check=True, timeout=DEADLINE)
            view.expect_exact("hel")
            sender = subprocess.run([*CHAT, "127.0.0.1", str(port), "--backend", backend,
                                     "-e", f"send {me} incoming while you type"],
                                    capture_output=True, text=True, timeout=DEADLINE,
                                    cwd=REPO, env=muxio_env(), check=False,
                                    stdin=subprocess.DEVNULL)
            assert sender.returncode == 0, sender.stderr
            view.expect_exact("left (bye)")  # the sender's departure is the last line
            view.expect_exact("hel")
            shown = subprocess.run([tmux, "-L", socket_name, "capture-pane", "-p", "-t",
                                    "chat"], capture_output=True, text=True, check=True,
                                   timeout=DEADLINE).stdout.rstrip("\n").splitlines()
            shown = [line.rstrip() for line in shown if line.strip()]
            assert re.match(r"message from \d+ \(127\.0\.0\.1:\d+\): incoming while you type$",
                            shown[-3]), shown
            assert re.match(r"\* client \d+ left \(bye\)$", shown[-2]), shown
            assert shown[-1] == f"chat#{me}> hel", shown
        finally:
            subprocess.run([tmux, "-L", socket_name, "kill-server"], check=False,
                           timeout=DEADLINE, capture_output=True)
            view.close(force=True)
