"""Chat across processes through Redis (`muxio serve chat --bus redis://...`,
docs/chat-protocol.md section 10): two server processes on one Redis act as one chat; a
killed server's clients leave within the presence TTL; while Redis is down new logins are
refused with the documented ERROR and local forwarding goes on; after Redis restarts,
everything is back. Each test starts its own redis-server on a free port."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from muxio.handlers.chat import ChatRefusedError, ErrorCode, ListOk, Message
from muxio.loop import Loop
from muxio.transports.registry import stream_transport
from tests.chat.harness import (
    DEADLINE,
    REPO,
    Client,
    ErrorResponse,
    Incoming,
    Left,
    SendOk,
    muxio_env,
)
from tests.processes import stop
from tests.redis.server import Redis, free_port, wait_for
from tests.tools import require_tool

TTL = 3.0
"""--bus-ttl of the servers here: a killed server's clients leave within it. Not much
shorter: a live server whose heartbeat is late by more than the TTL (a loaded host) is
swept too, and comes back at its next heartbeat."""


class ChatProcess:
    """`muxio serve chat --bus redis://...` in its own process; stderr (its log) in a file."""

    def __init__(self, redis: Redis, directory: Path, name: str,
                 extra: tuple[str, ...] = ()) -> None:
        self.log_path = directory / f"chat-{name}.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "muxio", "serve", "chat", "--host", "127.0.0.1",
                 "--port", "0", "--bus", f"redis://127.0.0.1:{redis.port}",
                 "--bus-ttl", str(TTL), "--bus-namespace", "test:chat", *extra],
                stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO, env=muxio_env())
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "serving chat" in line, (line, self.log())
        self.port = int(line.split("127.0.0.1:")[1].split()[0].rstrip(","))
        self.wait_up(1)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_up(self, times: int) -> None:
        """Until the server has logged its bus coming up `times` times."""
        wait_for(lambda: self.log().count("is up: server") >= times,
                 f"the bus of the server on port {self.port} to be up ({times})")

    def close(self) -> None:
        stop(self.process)


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.redis = Redis(require_tool("redis-server", "redis-server"), tmp_path)
        self.tmp_path = tmp_path
        self.servers: list[ChatProcess] = []
        self.loop = Loop()
        self.clients: list[Client] = []

    def server(self, name: str, extra: tuple[str, ...] = ()) -> ChatProcess:
        server = ChatProcess(self.redis, self.tmp_path, name, extra)
        self.servers.append(server)
        return server

    def client(self, server: ChatProcess, *, greeted: bool = True) -> Client:
        client = Client(self.loop)
        protocol = client.protocol
        stream_transport("tcp").connect(lambda: protocol, "127.0.0.1", server.port,
                                        loop=self.loop)
        self.clients.append(client)
        self.loop.run_until(lambda: client.ready or client.closed, timeout=DEADLINE)
        if greeted:
            assert client.ready, (client.recorder.closed_with, server.log()[-2000:])
        return client

    def ask(self, make: Callable[[Callable[[Message], None]], object]) -> Message:
        answers: list[Message] = []
        make(answers.append)
        self.loop.run_until(lambda: bool(answers), timeout=DEADLINE)
        return answers[0]

    def listed(self, client: Client) -> list[int]:
        answer = self.ask(client.protocol.list)
        assert isinstance(answer, ListOk), answer
        return [entry.client_id for entry in answer.clients]

    def wait_listed(self, client: Client, expected: list[int]) -> None:
        """LIST again until it gives `expected` (the directory changes asynchronously)."""
        deadline = self.loop.time() + DEADLINE
        while (listed := self.listed(client)) != expected:
            assert self.loop.time() < deadline, f"LIST still gives {listed}, not {expected}"

    def close(self) -> None:
        for client in self.clients:
            if not client.closed and client.protocol.transport is not None:
                client.protocol.transport.abort()
        self.loop.run_until(lambda: all(client.closed or client.protocol.transport is None
                                        for client in self.clients), timeout=DEADLINE)
        self.loop.close()
        for server in self.servers:
            server.close()
        self.redis.stop()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    rig.redis.start()
    try:
        yield rig
    finally:
        rig.close()


def test_two_servers_are_one_chat_then_a_killed_one_leaves_within_the_ttl(rig: Rig) -> None:
    a_server, b_server = rig.server("a"), rig.server("b")
    b = rig.client(b_server)
    a = rig.client(a_server)
    assert a.id != b.id
    rig.wait_listed(a, sorted([a.id, b.id]))
    assert rig.listed(b) == sorted([a.id, b.id])
    rig.loop.run_until(lambda: any(j.client.client_id == a.id for j in b.recorder.joined),
                       timeout=DEADLINE)  # B's client heard that A's joined
    answer = rig.ask(lambda done: a.protocol.send(b.id, "from A to B ✓", done))
    assert isinstance(answer, SendOk) and answer.to == b.id
    rig.loop.run_until(lambda: bool(b.recorder.messages), timeout=DEADLINE)
    message = b.recorder.messages[0]
    assert isinstance(message, Incoming)
    assert (message.sender, message.text) == (a.id, "from A to B ✓")
    back = rig.ask(lambda done: b.protocol.send(a.id, "and back", done))
    assert isinstance(back, SendOk)
    rig.loop.run_until(lambda: bool(a.recorder.messages), timeout=DEADLINE)
    assert a.recorder.messages[0].text == "and back"
    # Errors for ids elsewhere are the single-server ones: never given, and gone.
    nobody = rig.ask(lambda done: a.protocol.send(10_000, "?", done))
    assert isinstance(nobody, ErrorResponse) and nobody.code == ErrorCode.NO_SUCH_CLIENT

    b_server.process.send_signal(signal.SIGKILL)
    b_server.process.wait(timeout=DEADLINE)
    # No FIN reaches Redis's view of B's clients: only the presence TTL removes them.
    rig.wait_listed(a, [a.id])
    rig.loop.run_until(lambda: any(left.client_id == b.id for left in a.recorder.left),
                       timeout=DEADLINE)
    left = [left for left in a.recorder.left if left.client_id == b.id][-1]
    assert isinstance(left, Left) and left.reason == 2  # TIMEOUT
    gone = rig.ask(lambda done: a.protocol.send(b.id, "still there?", done))
    assert isinstance(gone, ErrorResponse) and gone.code == ErrorCode.CLIENT_GONE


def test_workers_of_one_server_are_one_chat_through_the_bus(rig: Rig) -> None:
    # `--workers 2`: two processes share the port (SO_REUSEPORT spreads the clients) and
    # meet in Redis, so every client lists all and reaches any, whichever worker took it.
    server = rig.server("workers", ("--workers", "2", "--port", str(free_port())))
    server.wait_up(2)
    clients = [rig.client(server) for _ in range(6)]
    ids = sorted(client.id for client in clients)
    assert len(set(ids)) == len(clients)
    for client in clients:
        rig.wait_listed(client, ids)
    first, last = clients[0], clients[-1]
    answer = rig.ask(lambda done: first.protocol.send(last.id, "across workers", done))
    assert isinstance(answer, SendOk) and answer.to == last.id
    rig.loop.run_until(lambda: bool(last.recorder.messages), timeout=DEADLINE)
    assert last.recorder.messages[0].text == "across workers"


def test_redis_down_refuses_logins_keeps_local_forwarding_then_recovers(rig: Rig) -> None:
    a_server, b_server = rig.server("a"), rig.server("b")
    a1, a2 = rig.client(a_server), rig.client(a_server)
    b = rig.client(b_server)
    rig.wait_listed(a1, sorted([a1.id, a2.id, b.id]))

    rig.redis.stop()
    refused = rig.client(a_server, greeted=False)
    assert refused.closed and not refused.ready
    error = refused.recorder.closed_with[0]
    assert isinstance(error, ChatRefusedError), error
    assert error.code == ErrorCode.SERVER_FULL
    assert "cannot register new clients now" in str(error)
    assert "chat directory (Redis at redis://127.0.0.1:" in str(error)
    # Between A's own clients nothing changes; LIST shows what A knows: its own.
    answer = rig.ask(lambda done: a1.protocol.send(a2.id, "local while down", done))
    assert isinstance(answer, SendOk)
    rig.loop.run_until(lambda: bool(a2.recorder.messages), timeout=DEADLINE)
    assert a2.recorder.messages[0].text == "local while down"
    assert rig.listed(a1) == sorted([a1.id, a2.id])
    elsewhere = rig.ask(lambda done: a1.protocol.send(b.id, "to B while down", done))
    assert isinstance(elsewhere, ErrorResponse)
    assert elsewhere.code == ErrorCode.NOT_DELIVERED
    assert "chat directory (Redis at" in elsewhere.description

    rig.redis.start()  # empty: no persistence; the servers register everything again
    a_server.wait_up(2)
    b_server.wait_up(2)
    c = rig.client(b_server)
    assert c.id not in {a1.id, a2.id, b.id}  # the id counter was raised on re-registration
    rig.wait_listed(c, sorted([a1.id, a2.id, b.id, c.id]))
    answer = rig.ask(lambda done: c.protocol.send(a1.id, "after the restart", done))
    assert isinstance(answer, SendOk)
    rig.loop.run_until(lambda: bool(a1.recorder.messages), timeout=DEADLINE)
    assert a1.recorder.messages[0].text == "after the restart"
    assert "the chat bus is down" in a_server.log()


def test_a_clean_stop_removes_the_servers_clients_at_once(rig: Rig) -> None:
    a_server, b_server = rig.server("a"), rig.server("b")
    a = rig.client(a_server)
    b = rig.client(b_server)
    b_server.process.send_signal(signal.SIGTERM)
    assert b_server.process.wait(timeout=DEADLINE) == 0
    # CLOSED, not TIMEOUT: it said goodbye.
    rig.loop.run_until(lambda: any((left.client_id, left.reason) == (b.id, 1)
                                   for left in a.recorder.left), timeout=DEADLINE)
    rig.wait_listed(a, [a.id])


def test_a_server_cut_off_past_the_ttl_is_swept_then_registers_again(rig: Rig) -> None:
    """SIGSTOP stands for a server cut off from Redis (or frozen) longer than the TTL: its
    clients are swept (LEFT TIMEOUT elsewhere); once it runs again, its heartbeat finds its
    presence gone and it registers its clients again (JOINED elsewhere)."""
    a_server, b_server = rig.server("a"), rig.server("b")
    a = rig.client(a_server)
    b = rig.client(b_server)
    rig.wait_listed(a, sorted([a.id, b.id]))
    b_server.process.send_signal(signal.SIGSTOP)
    try:
        rig.wait_listed(a, [a.id])
        rig.loop.run_until(lambda: any((left.client_id, left.reason) == (b.id, 2)
                                       for left in a.recorder.left), timeout=DEADLINE)
        joined_before = len(a.recorder.joined)
    finally:
        b_server.process.send_signal(signal.SIGCONT)
    rig.wait_listed(a, sorted([a.id, b.id]))
    rig.loop.run_until(lambda: any(j.client.client_id == b.id
                                   for j in a.recorder.joined[joined_before:]),
                       timeout=DEADLINE)
    answer = rig.ask(lambda done: a.protocol.send(b.id, "welcome back", done))
    assert isinstance(answer, SendOk)
    rig.loop.run_until(lambda: bool(b.recorder.messages), timeout=DEADLINE)
    assert "registering its clients again" in b_server.log()


@pytest.mark.parametrize(("value", "message"), [
    ("http://127.0.0.1:6379", "only redis:// is supported"),
    ("redis://", "names no host"),
    ("redis://h:99999", "out of range"),
    ("redis://h/x", "the database must be a number"),
])
def test_a_bad_bus_is_one_clear_line(value: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "muxio", "serve", "chat", "--port", "0", "--bus", value],
        capture_output=True, text=True, cwd=REPO, env=muxio_env(), timeout=DEADLINE,
        check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("muxio: error: --bus"), result.stderr
    assert message in lines[0] and "redis://HOST:PORT" in lines[0]
