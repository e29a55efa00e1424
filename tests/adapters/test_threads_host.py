"""The thread-per-connection host: muxio's echo, chat and HTTP handlers unchanged on blocking
sockets, the callback lock that keeps shared state correct, timers, bounds, and a stop that
leaves no thread and no fd behind."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from adapters.threads_host import RECV_SIZE, ThreadServer, ThreadTransport
from muxio.handlers.chat import ChatServer, ChatServerConfig, ErrorCode, LeaveReason, Message
from muxio.handlers.chat.messages import (
    ErrorResponse,
    Hello,
    Incoming,
    ListOk,
    SendOk,
    TimeOk,
    encode,
)
from muxio.handlers.echo import EchoProtocol
from muxio.handlers.http import HttpConfig, hello_app, http_protocol_factory
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports.registry import stream_transport
from tests.chat.harness import DEADLINE, REPO, ChatRig, muxio_env

HIGH_WATER = 64 * 1024


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll `condition` (set by server threads) until true; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{condition!r} still false after {timeout} s")
        threading.Event().wait(0.002)


def held_by_another_thread(lock: Any) -> bool:
    """True if some other thread holds `lock` right now (probed from a fresh thread)."""
    result: list[bool] = []

    def probe() -> None:
        acquired = lock.acquire(blocking=False)
        if acquired:
            lock.release()
        result.append(not acquired)

    prober = threading.Thread(target=probe)
    prober.start()
    prober.join(DEADLINE)
    return result[0]


def connect(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(DEADLINE)
    sock.connect(("127.0.0.1", port))
    return sock


def echo_once(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def server_side(server: ThreadServer, client: socket.socket) -> ThreadTransport:
    """The server's transport for `client` (matched by address), once it is served."""
    name = client.getsockname()
    wait_for(lambda: any(t.get_extra_info("peername") == name for t in server.connections))
    return next(t for t in server.connections if t.get_extra_info("peername") == name)


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


# -- chat: shared state under the server lock -----------------------------------------------


@contextmanager
def thread_chat_rig(config: ChatServerConfig | None = None) -> Iterator[ChatRig]:
    """The chat server on the thread host; muxio chat clients on a loop in this thread."""
    errors: list[dict[str, Any]] = []
    with Loop() as loop:
        host = ThreadServer("127.0.0.1", 0, on_error=errors.append)
        chat = ChatServer(host.scheduler, config or ChatServerConfig())
        host.start(chat.protocol_factory)
        rig = ChatRig(loop, chat, host, stream_transport("tcp"))
        try:
            yield rig
        finally:
            for client in rig.clients:
                if not client.closed and client.protocol.transport is not None:
                    client.protocol.transport.abort()
            host.stop()
            loop.run_until(lambda: all(client.closed or client.protocol.transport is None
                                       for client in rig.clients), timeout=DEADLINE)
            for _ in range(3):
                loop.run_once(0)
    assert not errors, f"exceptions escaped protocol callbacks: {errors}"


def test_chat_three_clients_list_forward_and_departure() -> None:
    with thread_chat_rig() as rig:
        a, b, c = rig.connect(3)
        listed = rig.ask(a, a.protocol.list)
        assert isinstance(listed, ListOk)
        # Ids follow the order in which the connection threads handled HELLO.
        assert [entry.client_id for entry in listed.clients] == sorted([a.id, b.id, c.id])
        seen = {entry.client_id: (entry.address, entry.port) for entry in listed.clients}
        for client in (a, b, c):
            assert seen[client.id] == client.transport.get_extra_info("sockname")[:2]

        answer = rig.ask(a, lambda reply: a.protocol.send(b.id, "hello B, from A", reply))
        assert answer == SendOk(request_id=answer.request_id, to=b.id)
        rig.run_until(lambda: bool(b.recorder.messages))
        host, port = a.transport.get_extra_info("sockname")[:2]
        assert b.recorder.messages == [Incoming(sender=a.id, address=host, port=port,
                                                text="hello B, from A")]
        assert a.recorder.messages == [] and c.recorder.messages == []

        c.protocol.bye()
        rig.run_until(lambda: c.closed and len(a.recorder.left) == 1)
        assert a.recorder.left[0].client_id == c.id
        assert a.recorder.left[0].reason == LeaveReason.BYE
        gone = rig.ask(a, lambda reply: a.protocol.send(c.id, "are you there?", reply))
        assert isinstance(gone, ErrorResponse) and gone.code == ErrorCode.CLIENT_GONE
        listed = rig.ask(b, b.protocol.list)
        assert isinstance(listed, ListOk)
        assert [entry.client_id for entry in listed.clients] == sorted([a.id, b.id])


def test_chat_table_stays_consistent_with_every_connection_thread_busy() -> None:
    """12 clients, each served by its own thread, all forwarding to all at once: every
    message arrives exactly once and ids stay unique, because each callback holds the one
    server lock while it touches the client table and the other clients' transports."""
    per_peer = 15
    with thread_chat_rig() as rig:
        clients = rig.connect(12)
        ids = [client.id for client in clients]
        assert len(set(ids)) == 12
        answers: list[Message] = []
        for sender in clients:
            with sender.protocol.batch():
                for receiver in clients:
                    if receiver is not sender:
                        for n in range(per_peer):
                            sender.protocol.send(receiver.id, f"{sender.id}:{n}",
                                                 answers.append)
        expected = 12 * 11 * per_peer
        rig.run_until(lambda: len(answers) == expected and all(
            len(client.recorder.messages) == 11 * per_peer for client in clients))
        assert all(isinstance(answer, SendOk) for answer in answers)
        for client in clients:
            texts = sorted(message.text for message in client.recorder.messages)
            assert texts == sorted(f"{sender}:{n}" for sender in ids if sender != client.id
                                   for n in range(per_peer))
        with rig.server.lock:
            assert sorted(rig.chat.clients) == sorted(ids)


def test_chat_slow_receiver_is_dropped_and_others_stay_served() -> None:
    """A client that never reads: the server buffers for it (its sender thread blocks in
    send), other clients are answered meanwhile, and past max_output_buffer it is dropped
    without ever blocking the sender's thread."""
    config = ChatServerConfig(max_output_buffer=1024 * 1024)
    with thread_chat_rig(config) as rig:
        sender, watcher = rig.connect(2)
        receiver = connect(rig.port, rcvbuf=4096)
        try:
            receiver.sendall(encode(Hello(request_id=1)))
            wait_for(lambda: len(rig.chat.clients) == 3)
            [receiver_id] = [i for i in rig.chat.clients if i not in (sender.id, watcher.id)]
            backed_up = server_side(rig.server, receiver)
            answers: list[Message] = []

            def failed() -> bool:
                return any(isinstance(answer, ErrorResponse) for answer in answers)

            def pump(stop: Callable[[], bool]) -> None:
                while sender.protocol.pending < 20 and not stop() and not failed():
                    sender.protocol.send(receiver_id, "m" * 8000, answers.append)

            def backed_up_enough() -> bool:
                return backed_up.get_write_buffer_size() > 256 * 1024

            while not backed_up_enough():
                pump(backed_up_enough)
                rig.loop.run_once(0.01)
            assert not failed()
            assert isinstance(rig.ask(watcher, watcher.protocol.time), TimeOk)
            while not failed():
                pump(lambda: False)
                rig.loop.run_once(0.01)
            first_error = next(a for a in answers if isinstance(a, ErrorResponse))
            assert first_error.code == ErrorCode.NOT_DELIVERED
            rig.run_until(lambda: bool(sender.recorder.left))
            assert sender.recorder.left[0].reason == LeaveReason.SLOW_RECEIVER
            wait_for(lambda: backed_up not in rig.server.connections)
            assert isinstance(rig.ask(watcher, watcher.protocol.time), TimeOk)
        finally:
            receiver.close()


# -- echo: flow control, a peer that never reads ---------------------------------------------


def test_echo_client_that_never_reads_does_not_block_the_others() -> None:
    with ThreadServer().start(EchoProtocol) as server:
        greedy = connect(server.port, rcvbuf=4096)
        greedy.setblocking(False)
        greedy_side = server_side(server, greedy)
        chunk = b"g" * 65536
        deadline = time.monotonic() + DEADLINE
        while greedy_side.is_reading():  # send until the server stops reading it
            assert time.monotonic() < deadline, "the server never paused the reader"
            try:
                greedy.send(chunk)
            except BlockingIOError:
                threading.Event().wait(0.002)
        # Bounded: the water mark plus at most the one recv the paused reader holds.
        assert greedy_side.get_write_buffer_size() <= HIGH_WATER + RECV_SIZE
        with connect(server.port) as polite:
            for n in range(100):
                message = f"message {n}".encode()
                assert echo_once(polite, message) == message
        assert not greedy_side.is_reading()
        greedy.close()


def test_stop_leaves_no_thread_and_no_fd() -> None:
    """Connections in every state (idle, backed up with a sender thread, paused,
    half-closed) are all gone after stop(): threads joined, sockets closed."""
    threads_before = set(threading.enumerate())
    tasks_before = os_threads()
    fds_before = open_fds()
    server = ThreadServer().start(EchoProtocol)
    clients = [connect(server.port) for _ in range(5)]
    backed_up = connect(server.port, rcvbuf=4096)
    try:
        for client in clients:
            assert echo_once(client, b"ping") == b"ping"
        backed_up.setblocking(False)
        backed_up_side = server_side(server, backed_up)
        while backed_up_side.is_reading():
            try:
                backed_up.send(b"b" * 65536)
            except BlockingIOError:
                threading.Event().wait(0.002)
        clients[0].shutdown(socket.SHUT_WR)  # half-closed: the echo handler keeps writing
        assert server.thread_count() >= 6 + 1  # readers, the sender, the acceptor
        server.stop()
        assert set(threading.enumerate()) == threads_before
        # A joined thread may take a moment more to leave the kernel's task list; so may a
        # thread of an earlier test in this process, counted in tasks_before: none is left
        # over when there are no more tasks than before.
        wait_for(lambda: os_threads() <= tasks_before)
    finally:
        server.stop()
        for client in [*clients, backed_up]:
            client.close()
    assert open_fds() == fds_before
    assert server.connections == set()


def test_handler_exception_aborts_only_its_connection() -> None:
    class Touchy(EchoProtocol):
        def data_received(self, data: bytes) -> None:
            if data == b"boom":
                raise ValueError("boom")
            super().data_received(data)

    errors: list[dict[str, Any]] = []
    with ThreadServer(on_error=errors.append).start(Touchy) as server, \
            connect(server.port) as victim, connect(server.port) as bystander:
        victim.sendall(b"boom")
        assert victim.recv(10) == b""
        wait_for(lambda: len(server.connections) == 1)
        assert [type(error["exception"]) for error in errors] == [ValueError]
        assert "Touchy.data_received raised" in errors[0]["message"]
        assert echo_once(bystander, b"still here") == b"still here"


# -- the lock policies ---------------------------------------------------------------------


class LockProbe(Protocol):
    """Records, in data_received, whether the server-wide lock is held (by this thread,
    so a probe thread cannot take it) and whether its transport's lock is."""

    seen: list[tuple[bool, bool]]

    def __init__(self, server: ThreadServer, seen: list[tuple[bool, bool]]) -> None:
        self.server = server
        self.seen = seen
        self.transport: Any = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.seen.append((held_by_another_thread(self.server.lock),
                          held_by_another_thread(self.transport._lock)))
        self.transport.write(data)


@pytest.mark.parametrize(("policy", "server_lock_held"), [("server", True),
                                                          ("connection", False)])
def test_callbacks_hold_the_lock_of_their_policy(policy: Any, server_lock_held: bool) -> None:
    seen: list[tuple[bool, bool]] = []
    with ThreadServer(lock=policy) as server:
        server.start(lambda: LockProbe(server, seen))
        with connect(server.port) as client:
            assert echo_once(client, b"x") == b"x"
    assert seen == [(server_lock_held, True)]


def test_connection_policy_runs_connections_in_parallel() -> None:
    """With one lock per connection, a callback of connection B runs while a callback of
    connection A is still inside (A waits for B). The server policy would serialise them."""
    b_arrived = threading.Event()
    a_saw_b: list[bool] = []

    class Rendezvous(EchoProtocol):
        def data_received(self, data: bytes) -> None:
            if data == b"A":
                a_saw_b.append(b_arrived.wait(DEADLINE))
            else:
                b_arrived.set()
            super().data_received(data)

    with ThreadServer(lock="connection").start(Rendezvous) as server, \
            connect(server.port) as a, connect(server.port) as b:
        a.sendall(b"A")
        server_side(server, b)
        assert echo_once(b, b"B") == b"B"
        assert a.recv(1) == b"A"
    assert a_saw_b == [True]


# -- timers --------------------------------------------------------------------------------


def test_timers_fire_in_order_under_the_server_lock_and_cancel() -> None:
    with ThreadServer().start(EchoProtocol) as server:
        scheduler = server.scheduler
        fired: list[str] = []
        locked: list[bool] = []
        done = threading.Event()
        returned = threading.Event()

        def record(name: str) -> None:
            fired.append(name)
            locked.append(held_by_another_thread(server.lock))

        def outer() -> None:
            record("outer")
            scheduler.call_soon(after)  # runs once this callback has returned
            returned.set()

        def after() -> None:
            fired.append(f"after, outer returned: {returned.is_set()}")

        def last() -> None:
            record("last")
            done.set()

        scheduler.call_later(0.05, last)
        scheduler.call_later(0.01, record, "later")
        cancelled = scheduler.call_later(0.02, record, "cancelled")
        scheduler.call_soon(outer)
        cancelled.cancel()
        assert done.wait(DEADLINE)
        assert fired == ["outer", "after, outer returned: True", "later", "last"]
        assert locked == [True, True, True]
        assert scheduler.pending() == 0
        assert scheduler.time() <= time.monotonic()


# -- bounds ---------------------------------------------------------------------------------


def test_max_threads_leaves_later_clients_waiting_in_the_backlog() -> None:
    with ThreadServer(max_threads=2).start(EchoProtocol) as server:
        first, second = connect(server.port), connect(server.port)
        assert echo_once(first, b"1") == b"1" and echo_once(second, b"2") == b"2"
        with connect(server.port) as third:  # the kernel completes the handshake...
            third.sendall(b"3")
            third.settimeout(0.3)
            with pytest.raises(TimeoutError):  # ...but no thread serves it
                third.recv(1)
            assert len(server.connections) == 2
            first.close()
            third.settimeout(DEADLINE)
            assert third.recv(1) == b"3"
        second.close()


def test_bad_options_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="lock policy 'global' unknown"):
        ThreadServer(lock="global")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_threads must be >= 1"):
        ThreadServer(max_threads=0)


# -- HTTP -----------------------------------------------------------------------------------


def test_http_keepalive_and_idle_timeout() -> None:
    config = HttpConfig(header_timeout=0.3, keepalive_timeout=0.3)
    with ThreadServer() as server:
        server.start(http_protocol_factory(hello_app(), server.scheduler, config))
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE)
        try:
            for _ in range(3):  # one connection, three requests
                connection.request("GET", "/")
                response = connection.getresponse()
                assert response.status == 200
                assert response.read() == b"Hello, World!\n"
        finally:
            connection.close()
        with connect(server.port) as idle:  # the handler's timer closes it (timer thread)
            assert idle.recv(100) == b""
        wait_for(lambda: not server.connections)


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_hosts_echo_on_threads_for_the_bench() -> None:
    code = (
        "from muxio.bench.runner import ServerProcess, peer_target, free_port\n"
        "from muxio.bench.workloads import echo_load\n"
        "server = ServerProcess(peer_target('threads', 'echo'), free_port(), None)\n"
        "try:\n"
        "    print(echo_load(connections=5)(server.port, 0.3, None))\n"
        "finally:\n"
        "    server.stop()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False, cwd=REPO, env=muxio_env())
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 0


def test_cli_refuses_a_stack_too_small() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adapters", "--loop", "threads", "--service", "echo",
         "--stack-size", "4"], capture_output=True, text=True, timeout=60, check=False,
        cwd=REPO, env=muxio_env())
    assert result.returncode == 2
    assert "--stack-size is in KiB and must be >= 32" in result.stderr
