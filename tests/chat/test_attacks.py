"""Attacks on the chat server (issue 13, and issue 12 item 6), each bounded in time and
count, on two backends.

Bounds are stated and measured by events or on the fake clock, never as durations: frames
handled before a timer or a signal gets its turn, writes made for N joins, entry encodings
made for a LIST flood, the fake time at which a dripping or un-greeted peer is cut off,
the connections an un-greeted flood can hold. Long versions, with latency, RSS and CPU
figures: benchmarks/attacks.py.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from muxio.handlers.chat import (
    ChatServerConfig,
    ChatServerProtocol,
    ClientEntry,
    Closing,
    ErrorCode,
    ErrorResponse,
    LeaveReason,
    Message,
    encode,
)
from muxio.handlers.chat.messages import (
    HEADER,
    GetList,
    GetTime,
    Hello,
    HelloOk,
    ListOk,
    Ping,
    Send,
    TimeOk,
)
from muxio.loop import Loop
from muxio.protocols import Transport
from muxio.testing.clock import FakeClock
from muxio.testing.matrix import matrix_backends
from muxio.testing.memory import memory_pair
from tests.chat.harness import RawPeer, chat_rig

ATTACK_BACKENDS = [name for name in ("epoll", "poll") if name in matrix_backends()] or (
    matrix_backends()[:2])
"""The attacks run on two backends; the other chat tests run on every backend."""


def raw_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def read_all(sock: socket.socket) -> tuple[bytes, bool]:
    """What `sock` has now, and whether the peer closed (EOF; a reset raises)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks), False
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def decode_all(data: bytes) -> list[Any]:
    peer = RawPeer()
    peer.received += data
    return peer.messages()


@contextmanager
def sockets(count: int, port: int) -> Iterator[list[socket.socket]]:
    socks = [raw_socket(port) for _ in range(count)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


# -- heartbeats: complete frames only; greeting deadline and cap ---------------------------


@pytest.mark.parametrize("attack_backend", ATTACK_BACKENDS)
def test_a_peer_dripping_an_unfinished_frame_is_dropped_as_silent(attack_backend: str) -> None:
    """One byte of an unfinished frame every second used to refresh the heartbeat for
    ever; only complete frames count now, so the dripper is dropped interval x misses
    after its last complete frame, to the millisecond on the fake clock."""
    config = ChatServerConfig(heartbeat_interval=2.0, heartbeat_misses=3)
    clock = FakeClock(max_step=0.01)
    with chat_rig(attack_backend, "tcp", config, clock) as rig, sockets(1, rig.port) as [sock]:
        [watcher] = rig.connect(1)
        sock.send(encode(Hello(request_id=1)))
        rig.run_until(lambda: len(rig.chat.clients) == 2)
        last_frame = clock.monotonic()
        [dripper] = [client_id for client_id in rig.chat.clients if client_id != watcher.id]
        unfinished = encode(Send(request_id=2, to=watcher.id, text="d" * 200))[:-1]

        def drip(offset: int) -> None:
            if offset < len(unfinished) and dripper in rig.chat.clients:
                try:
                    sock.send(unfinished[offset:offset + 1])
                except OSError:
                    return  # dropped meanwhile
                rig.loop.call_later(1.0, drip, offset + 1)

        drip(0)
        rig.run_until(lambda: dripper not in rig.chat.clients, timeout=1000)
        assert clock.monotonic() - last_frame == pytest.approx(6.0, abs=0.01)
        rig.run_until(lambda: bool(watcher.recorder.left))
        assert watcher.recorder.left[0].reason == LeaveReason.TIMEOUT


@pytest.mark.parametrize("attack_backend", ATTACK_BACKENDS)
def test_a_peer_that_never_says_hello_is_closed_at_the_hello_deadline(
        attack_backend: str) -> None:
    """PINGs are complete frames and keep the heartbeat happy; they no longer keep an
    un-greeted connection open past `hello_timeout` (it gets CLOSING, then EOF)."""
    config = ChatServerConfig(heartbeat_interval=2.0, hello_timeout=5.0)
    clock = FakeClock(max_step=0.01)
    with chat_rig(attack_backend, "tcp", config, clock) as rig, sockets(1, rig.port) as [sock]:
        rig.run_until(lambda: len(rig.server.connections) == 1)
        connected = clock.monotonic()

        def ping(request_id: int) -> None:
            if rig.server.connections:
                try:
                    sock.send(encode(Ping(request_id=request_id)))
                except OSError:
                    return
                rig.loop.call_later(1.0, ping, request_id + 1)

        ping(1)
        received = bytearray()
        ended = [False]

        def closed_by_server() -> bool:
            data, eof = read_all(sock)
            received.extend(data)
            ended[0] = ended[0] or eof
            return ended[0]

        rig.run_until(closed_by_server, timeout=1000)
        assert clock.monotonic() - connected == pytest.approx(config.hello_timeout, abs=0.02)
        closing = [m for m in decode_all(bytes(received)) if isinstance(m, Closing)]
        assert len(closing) == 1 and "HELLO" in closing[0].reason
        sock.shutdown(socket.SHUT_WR)  # it reads our EOF and closes: so do we
        rig.run_until(lambda: not rig.server.connections)
        assert rig.chat.stats["hello_timeouts"] == 1


@contextmanager
def fd_limit_headroom(headroom: int) -> Iterator[None]:
    """Only `headroom` more fds can be opened (the soft limit is lowered and the free
    numbers below it filled); restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1 + headroom, hard))
    fillers: list[int] = []
    try:
        while True:
            try:
                fd = os.open(os.devnull, os.O_RDONLY)
            except OSError as exc:
                assert exc.errno == errno.EMFILE, exc
                break
            if fd > highest:  # above the old top: that is the headroom, give it back
                os.close(fd)
                break
            fillers.append(fd)
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("attack_backend", ATTACK_BACKENDS)
def test_unfinished_greetings_cannot_use_up_the_fds(attack_backend: str) -> None:
    """60 connections that never finish a frame, on a server that can open 30 more fds:
    they used to hold every fd, so a good client was not even accepted until the
    heartbeat dropped them (30 s; never while they drip). The oldest un-greeted ones are
    now evicted past `max_ungreeted` once they have waited `ungreeted_grace`, and the good
    client is greeted then: long before the hello deadline or the heartbeat."""
    config = ChatServerConfig(max_ungreeted=20, hello_timeout=10.0)
    clock = FakeClock(max_step=0.01)
    with chat_rig(attack_backend, "tcp", config, clock) as rig, \
            sockets(60, rig.port) as drippers, sockets(1, rig.port) as [good]:
        for sock in drippers:
            sock.send(b"\x00\x00")  # the start of a length prefix, never finished
        good.send(encode(Hello(request_id=1)))
        received = bytearray()

        def greeted() -> bool:
            received.extend(read_all(good)[0])
            return any(isinstance(m, HelloOk) for m in decode_all(bytes(received)))

        with fd_limit_headroom(30):
            rig.run_until(greeted, timeout=1000)
            # Each grace period frees the fds above max_ungreeted (10 here): the good client,
            # behind 60 drippers in the accept queue, is in after a few periods, by eviction,
            # not by a timeout (hello deadline: 10 s, heartbeat: 30 s).
            assert clock.monotonic() < config.hello_timeout / 2
            assert rig.chat.stats["hello_timeouts"] == 0
            assert rig.chat.stats["evicted_ungreeted"] > 0
            assert len(rig.chat.connections) <= config.max_ungreeted + 1
        evicted = 0
        for sock in drippers:
            try:
                data, eof = read_all(sock)
            except ConnectionResetError:
                evicted += 1  # closed before its bytes were read: the kernel resets
                continue
            if eof:
                assert [type(m) for m in decode_all(data)][:1] == [Closing]
                evicted += 1
        assert evicted >= 60 - config.max_ungreeted - 1


def test_a_storm_of_clients_that_greet_at_once_is_not_evicted() -> None:
    """300 clients connecting at once on a server with max_ungreeted=10: all of them are
    accepted before any HELLO is read, and none is evicted, since none has waited
    ungreeted_grace (a thousand clients reconnecting after a restart must not be
    mistaken for a flood)."""
    with memory_chat(max_ungreeted=10, max_clients=1000) as (loop, chat):
        peers = [RawPeer(encode(Hello(request_id=1))) for _ in range(300)]
        for peer in peers:
            memory_pair(loop, peer, chat.protocol_factory())
        assert chat.ungreeted == 300
        loop.run_until(lambda: len(chat.clients) == 300, timeout=100)
        assert chat.stats["evicted_ungreeted"] == 0 and chat.ungreeted == 0


# -- LIST floods: bounded frames per turn, timers and signals keep their latency -------------


@pytest.fixture
def sigusr1() -> Iterator[list[float]]:
    """SIGUSR1 handled on the loop (the list of times it fired); restored afterwards."""
    previous = signal.getsignal(signal.SIGUSR1)
    fired: list[float] = []
    yield fired
    signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("attack_backend", ATTACK_BACKENDS)
def test_a_list_flood_cannot_delay_timers_signals_or_other_clients(
        attack_backend: str, sigusr1: list[float]) -> None:
    """Issue 12 item 6, scaled down: 50 clients each pipelining 200 LISTs. Every frame of
    a read used to be handled before the loop looked at its timers and signals (500 x 200
    starved SIGTERM for > 15 s). Now a connection gets `frames_per_turn` frames per turn:
    its read, then the continuation it schedules (the loop runs callbacks scheduled by I/O
    callbacks in the same iteration, before its timers), so a timer due now and a signal
    sent now run after at most two turns per connection (3200 frames here, was 10 000),
    and so does a good client's request."""
    config = ChatServerConfig()
    flooders = 50
    with chat_rig(attack_backend, "tcp", config) as rig:
        [good] = rig.connect(1)
        peers = [rig.connect_raw(encode(Hello(request_id=1))) for _ in range(flooders)]
        rig.run_until(lambda: len(rig.chat.clients) == flooders + 1)
        flood = b"".join(encode(GetList(request_id=i)) for i in range(2, 202))
        for peer in peers:  # they read everything: flow control does not stop them
            assert peer.transport is not None
            peer.transport.write(flood)
        handled: dict[str, int] = {}
        start = rig.chat.stats["frames"]
        rig.loop.add_signal_handler(
            signal.SIGUSR1, lambda: handled.setdefault("signal", rig.chat.stats["frames"]))
        try:
            rig.loop.call_later(0, lambda: handled.setdefault("timer",
                                                              rig.chat.stats["frames"]))
            os.kill(os.getpid(), signal.SIGUSR1)  # in the wakeup pipe before the next poll
            answer: list[Message] = []
            good.protocol.time(answer.append)
            rig.run_until(lambda: "timer" in handled and "signal" in handled)
            good_sent = rig.chat.stats["frames"]
            rig.run_until(lambda: bool(answer))
            good_answered = rig.chat.stats["frames"]
        finally:
            rig.loop.remove_signal_handler(signal.SIGUSR1)
        bound = 2 * (flooders + 1) * config.frames_per_turn  # the good client has turns too
        assert handled["timer"] - start <= bound, handled
        assert handled["signal"] - start <= bound, handled
        assert handled["timer"] - start < flooders * 200  # the flood was not over
        assert isinstance(answer[0], TimeOk)
        assert good_answered - good_sent <= bound


class CountingPeer(RawPeer):
    """A raw peer that counts the writes it receives (one data_received per write on
    the in-memory transport)."""

    def __init__(self, initial: bytes = b"") -> None:
        super().__init__(initial)
        self.writes = 0

    def data_received(self, data: bytes) -> None:
        self.writes += 1
        super().data_received(data)


@contextmanager
def memory_chat(**config: Any) -> Iterator[tuple[Loop, Any]]:
    from muxio.handlers.chat import ChatServer

    with Loop(clock=FakeClock()) as loop:
        chat = ChatServer(loop, ChatServerConfig(**config), hostname="h")
        yield loop, chat


def test_joins_and_leaves_in_one_turn_cost_linear_writes() -> None:
    """300 clients greeted in one loop iteration, then leaving in one: every JOINED and
    LEFT reaches every other client, in N writes per batch instead of N x N / 2."""
    count = 300
    with memory_chat(max_clients=1000) as (loop, chat):
        peers = [CountingPeer(encode(Hello(request_id=1))) for _ in range(count)]
        sides = []
        for peer in peers:
            side = chat.protocol_factory()
            memory_pair(loop, peer, side)
            sides.append(side)
        loop.run_until(lambda: len(chat.clients) == count, timeout=100)
        for _ in range(5):
            loop.run_once(0)
        writes = sum(peer.writes for peer in peers)
        assert writes <= 3 * count, writes
        first, last = peers[0].messages(), peers[-1].messages()
        joined_first = [m.client.client_id for m in first if type(m).__name__ == "Joined"]
        assert joined_first == sorted(chat.clients)[1:]  # everyone after it, in order
        assert not [m for m in last if type(m).__name__ == "Joined"]
        for peer in peers[:-1]:
            assert peer.transport is not None
            peer.transport.write_eof()
        loop.run_until(lambda: len(chat.clients) == 1, timeout=100)
        for _ in range(5):
            loop.run_once(0)
        writes = peers[-1].writes
        assert writes <= 4, writes  # HELLO_OK, JOINED batch(es) (none), LEFT batch(es)
        lefts = [m.client_id for m in peers[-1].messages() if type(m).__name__ == "Left"]
        assert sorted(lefts) == sorted(side.client_id for side in sides[:-1])


def test_batched_indications_keep_each_clients_order() -> None:
    """JOINED/LEFT wait for the end of the iteration, but never behind a later frame: a
    client that joins and at once sends a message is JOINED before its MESSAGE at the
    recipient, and a LIST after a join lists the newcomer after the JOINED."""
    with memory_chat() as (loop, chat):
        watcher = CountingPeer(encode(Hello(request_id=1)))
        memory_pair(loop, watcher, chat.protocol_factory())
        loop.run_until(lambda: len(chat.clients) == 1, timeout=100)
        [watcher_id] = chat.clients
        newcomer = CountingPeer(encode(Hello(request_id=1))
                               + encode(Send(request_id=2, to=watcher_id, text="hi")))
        memory_pair(loop, newcomer, chat.protocol_factory())
        loop.run_until(lambda: len(chat.clients) == 2, timeout=100)
        assert watcher.transport is not None
        watcher.transport.write(encode(GetList(request_id=2)))
        loop.run_until(lambda: any(isinstance(m, ListOk) for m in watcher.messages()),
                       timeout=100)
        kinds = [type(m).__name__ for m in watcher.messages()
                 if type(m).__name__ in ("Joined", "Incoming", "ListOk")]
        assert kinds == ["Joined", "Incoming", "ListOk"], kinds


class WriteCounter:
    """A transport proxy counting the server's writes."""

    def __init__(self, transport: Transport, counter: list[int]) -> None:
        self._transport = transport
        self._counter = counter

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._counter[0] += 1
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@pytest.mark.parametrize("attack_backend", ATTACK_BACKENDS)
def test_a_join_storm_over_tcp_costs_writes_linear_in_clients(
        attack_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 clients saying HELLO at once (as a benchmark or a reconnect storm does): the
    JOINED indications used to cost one write per (joiner, listed client) pair."""
    count = 200
    writes = [0]
    original = ChatServerProtocol.connection_made

    def counting(protocol: ChatServerProtocol, transport: Transport) -> None:
        original(protocol, WriteCounter(transport, writes))  # type: ignore[arg-type]

    monkeypatch.setattr(ChatServerProtocol, "connection_made", counting)
    with chat_rig(attack_backend, "tcp", ChatServerConfig()) as rig, \
            sockets(count, rig.port) as socks:
        for sock in socks:
            sock.send(encode(Hello(request_id=1)))
        rig.run_until(lambda: len(rig.chat.clients) == count)
        for _ in range(5):
            rig.loop.run_once(0)
        # Joins come in a few loop iterations (accepts are batched): a few writes per
        # client, against count x count / 2 = 20 000 before.
        assert writes[0] <= 10 * count, writes[0]


def test_a_list_flood_encodes_the_list_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """300 LISTs with 100 clients listed used to encode 30 000 entries; the encoded list is
    now kept until someone joins or leaves."""
    encoded = [0]
    original = ClientEntry.encode

    def counting(entry: ClientEntry) -> bytes:
        encoded[0] += 1
        return original(entry)

    with memory_chat() as (loop, chat):
        peers = [RawPeer(encode(Hello(request_id=1))) for _ in range(100)]
        for peer in peers:
            memory_pair(loop, peer, chat.protocol_factory())
        loop.run_until(lambda: len(chat.clients) == 100, timeout=100)
        monkeypatch.setattr(ClientEntry, "encode", counting)
        flooder = peers[0]
        assert flooder.transport is not None
        flooder.transport.write(b"".join(encode(GetList(request_id=i)) for i in range(2, 302)))
        frames_before = chat.stats["frames"]
        loop.run_until(lambda: chat.stats["frames"] == frames_before + 300, timeout=100)
        for _ in range(5):
            loop.run_once(0)  # the answers reach the peer
        assert encoded[0] <= 100, encoded[0]
        lists = [m for m in flooder.messages() if isinstance(m, ListOk)]
        assert [m.request_id for m in lists] == list(range(2, 302))
        assert all([e.client_id for e in m.clients] == sorted(chat.clients) for m in lists)


# -- too many invalid frames: the client reads why before the connection ends -------------


@pytest.mark.parametrize("attack_backend", ATTACK_BACKENDS)
def test_a_client_dropped_for_invalid_frames_reads_every_error_then_eof(
        attack_backend: str) -> None:
    """100 invalid frames in a row: the client used to get a bare EOF (its ERROR frames
    were dropped with the connection). It now reads the ERRORs and a CLOSING that says
    why, then EOF (not a reset), while the other clients are told LEFT PROTOCOL_ERRORS."""
    config = ChatServerConfig(max_protocol_errors=100)
    with chat_rig(attack_backend, "tcp", config) as rig, sockets(1, rig.port) as [sock]:
        [watcher] = rig.connect(1)
        sock.send(encode(Hello(request_id=1)))
        rig.run_until(lambda: len(rig.chat.clients) == 2)
        unknown = HEADER.pack(5, 0x3C, 7)
        sock.send(unknown * 100 + encode(GetTime(request_id=2)) * 50)  # more behind them
        received = bytearray()
        closed = [False]

        def ended() -> bool:
            data, eof = read_all(sock)
            received.extend(data)
            closed[0] = closed[0] or eof
            return closed[0]

        rig.run_until(ended)
        messages = [m for m in decode_all(bytes(received)) if isinstance(m, Message)]
        errors = [m for m in messages if isinstance(m, ErrorResponse)]
        assert len(errors) == 100 and {e.code for e in errors} == {ErrorCode.UNKNOWN_TYPE}
        assert isinstance(messages[-1], Closing) and "invalid" in messages[-1].reason
        assert not any(isinstance(m, TimeOk) for m in messages)  # nothing after the drop
        rig.run_until(lambda: bool(watcher.recorder.left))
        assert watcher.recorder.left[0].reason == LeaveReason.PROTOCOL_ERRORS
        sock.shutdown(socket.SHUT_WR)  # it has read why: it closes, and so does the server
        rig.run_until(lambda: len(rig.server.connections) == 1)
