"""Real sockets on every backend: a peer that goes silent without a FIN is found by the
heartbeats and removed in time; a peer that stops reading is cut off, not buffered for."""

from __future__ import annotations

import logging
import socket

import pytest

from muxio.handlers.chat import ChatServerConfig, ErrorCode, LeaveReason, Message, encode
from muxio.handlers.chat.messages import ErrorResponse, GetTime, Hello, SendOk
from muxio.testing import FakeClock
from tests.chat.harness import chat_rig

INTERVAL = 0.2
MISSES = 3


def raw_socket(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    """A plain TCP socket to the server that never reads and never answers: an unplugged
    cable, as far as the server can tell."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def test_silent_peer_is_removed_within_interval_times_misses(backend: str) -> None:
    config = ChatServerConfig(heartbeat_interval=INTERVAL, heartbeat_misses=MISSES)
    with chat_rig(backend, "tcp", config, FakeClock(max_step=0.01)) as rig:
        [watcher] = rig.connect(1)
        with raw_socket(rig.port) as silent:
            silent.send(encode(Hello(request_id=1)))
            rig.run_until(lambda: len(rig.chat.clients) == 2)
            joined_at = rig.loop.time()
            [silent_id] = [i for i in rig.chat.clients if i != watcher.id]
            rig.run_until(lambda: silent_id not in rig.chat.clients)
            # Exactly interval x misses of silence, on the fake clock (the real one would
            # add the machine's latency; speed is for benchmarks).
            assert rig.loop.time() - joined_at == pytest.approx(INTERVAL * MISSES, abs=0.02)
            rig.run_until(lambda: len(rig.server.connections) == 1)  # its socket is closed
            rig.run_until(lambda: bool(watcher.recorder.left))
            assert watcher.recorder.left[0].client_id == silent_id
            assert watcher.recorder.left[0].reason == LeaveReason.TIMEOUT
            assert rig.chat.stats["dropped_timeout"] == 1
            assert watcher.id in rig.chat.clients  # the live client answered its PINGs


def test_peer_that_never_says_hello_is_closed_too(backend: str) -> None:
    config = ChatServerConfig(heartbeat_interval=INTERVAL, heartbeat_misses=2)
    with chat_rig(backend, "tcp", config, FakeClock(max_step=0.01)) as rig, raw_socket(rig.port):
        rig.run_until(lambda: len(rig.server.connections) == 1)
        connected = rig.loop.time()
        rig.run_until(lambda: not rig.server.connections)
        assert rig.loop.time() - connected == pytest.approx(INTERVAL * 2, abs=0.02)
        assert not rig.chat.connections and rig.chat.stats["dropped_timeout"] == 1


def test_slow_receiver_is_dropped_with_a_logged_reason(
        backend: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "muxio.chat")
    config = ChatServerConfig(max_output_buffer=256 * 1024)
    with chat_rig(backend, "tcp", config) as rig:
        [sender] = rig.connect(1)
        with raw_socket(rig.port, rcvbuf=4096) as receiver:
            receiver.send(encode(Hello(request_id=1)))
            rig.run_until(lambda: len(rig.chat.clients) == 2)
            [receiver_id] = [i for i in rig.chat.clients if i != sender.id]
            answers: list[Message] = []

            def pump() -> None:
                """Keep 50 messages in flight until the server gives up on the receiver."""
                while sender.protocol.pending < 50 and not any(
                        isinstance(a, ErrorResponse) for a in answers):
                    sender.protocol.send(receiver_id, "m" * 8000, collect)

            def collect(answer: Message) -> None:
                answers.append(answer)
                pump()

            pump()
            rig.run_until(lambda: any(isinstance(a, ErrorResponse) for a in answers),
                          timeout=60.0)
            first_error = next(a for a in answers if isinstance(a, ErrorResponse))
            assert first_error.code == ErrorCode.NOT_DELIVERED
            assert receiver_id not in rig.chat.clients
            delivered = sum(isinstance(a, SendOk) for a in answers)
            assert delivered > 0
            assert "slow receiver" in caplog.text and f"client {receiver_id}" in caplog.text
            rig.run_until(lambda: bool(sender.recorder.left))
            assert sender.recorder.left[0].reason == LeaveReason.SLOW_RECEIVER
            rig.run_until(lambda: len(rig.server.connections) == 1)


def test_pipelining_without_reading_stalls_only_that_client(backend: str) -> None:
    with chat_rig(backend, "tcp") as rig:
        [other] = rig.connect(1)
        with raw_socket(rig.port, rcvbuf=4096) as greedy:
            batch = encode(Hello(request_id=1)) + b"".join(
                encode(GetTime(request_id=i)) for i in range(2, 5000))
            sent = 0
            server_side = None
            while server_side is None or server_side.transport is None or (
                    server_side.transport.is_reading()):
                try:
                    sent += greedy.send(batch)
                except BlockingIOError:
                    pass  # full: the server has not read it yet, or it stopped reading us
                assert sent < 200 * 1024 * 1024, "the server never paused reading this peer"
                rig.loop.run_once(0.001)
                server_side = next((c for c in rig.chat.connections
                                    if c.client_id != other.id and c.ready), None)
            # Paused: it holds at most its high-water mark plus one flush of our answers.
            assert server_side.transport.get_write_buffer_size() < 100 * 1024
            answer = rig.ask(other, other.protocol.time)
            assert answer.request_id > 0  # everyone else is still served
