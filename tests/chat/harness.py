"""Shared pieces of the chat tests: sans-I/O drivers, a server on a loop, recording clients,
a raw-bytes peer, and the CLI in a subprocess."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muxio.handlers.chat import (
    CLOSED,
    NEED_DATA,
    ChatClientConfig,
    ChatClientHandler,
    ChatClientProtocol,
    ChatServer,
    ChatServerConfig,
    ChatSession,
    Closing,
    ErrorResponse,
    Event,
    GetList,
    GetName,
    GetTime,
    Hello,
    HelloOk,
    Incoming,
    InvalidFrame,
    Joined,
    Left,
    ListOk,
    Message,
    Role,
    Send,
    SendOk,
    encode,
)
from muxio.handlers.chat.messages import (
    Bye,
    ByeOk,
    ClientEntry,
    NameOk,
    Ping,
    Pong,
    TimeOk,
)
from muxio.loop import Clock, Loop
from muxio.protocols import Protocol, Transport
from muxio.transports.registry import StreamTransportSpec, stream_transport
from tests.processes import stop

DEADLINE = 30.0
"""Longest any single wait in these tests may take before it counts as a failure."""
REPO = Path(__file__).resolve().parents[2]

SAMPLES: list[Message] = [
    Hello(request_id=1), Hello(request_id=7, version=65535),
    GetTime(request_id=2), GetName(request_id=3), GetList(request_id=4),
    Send(request_id=5, to=2, text="hello"), Send(request_id=6, to=0xFFFFFFFF, text=""),
    Send(request_id=8, to=9, text="naïve ✓ 🎉 \x00\n\r\x1b[2J length\x00prefix"),
    Ping(request_id=0xFFFFFFFF), Bye(request_id=9),
    HelloOk(request_id=1, version=1, client_id=3, address="::1", port=40000,
            max_frame=65536, heartbeat_ms=10000),
    TimeOk(request_id=2, unix_ms=-1, text="1969-12-31T23:59:59.999+00:00"),
    NameOk(request_id=3, name="host.example"),
    ListOk(request_id=4, clients=(ClientEntry(1, "127.0.0.1", 1),
                                  ClientEntry(2, "2001:db8::1", 65535)), more=True),
    ListOk(request_id=4, clients=()),
    SendOk(request_id=5, to=2), Pong(request_id=6), ByeOk(request_id=9),
    ErrorResponse(request_id=5, code=12, request_type=5, description="client 2 has left"),
    Incoming(sender=3, address="127.0.0.1", port=40000, text="hi\nthere"),
    Joined(client=ClientEntry(4, "10.0.0.1", 5)), Left(client_id=4, reason=2),
    Closing(reason="bye now"),
]
"""One or more of every message type, with edge values."""


def splits(data: bytes, sizes: Iterable[int]) -> Iterator[bytes]:
    """`data` cut into pieces of the given sizes (cycled), the last piece what is left."""
    sizes = list(sizes)
    offset = 0
    index = 0
    while offset < len(data):
        size = max(1, sizes[index % len(sizes)])
        yield data[offset:offset + size]
        offset += size
        index += 1


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return list(splits(data, [rng.choice((1, 2, 3, 5, 8, 13, 64, 1000)) for _ in range(64)]))


def drain(session: ChatSession) -> list[Event]:
    """Every event the session has now (stops at NEED_DATA, includes CLOSED)."""
    events: list[Event] = []
    while True:
        event = session.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if event is CLOSED:
            return events


def feed_pieces(session: ChatSession, pieces: Iterable[bytes], eof: bool = False) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        session.receive_data(piece)
        events.extend(drain(session))
    if eof:
        session.receive_data(b"")
        events.extend(drain(session))
    return events


def greeted_server_session(max_frame: int = 65536) -> ChatSession:
    """A server session past HELLO (as the server shell leaves it)."""
    session = ChatSession(Role.SERVER, max_frame=max_frame, peer_max_frame=max_frame)
    session.receive_data(b"".join([encode(Hello(request_id=1))]))
    assert isinstance(session.next_event(), Hello)
    session.send(HelloOk(request_id=1, version=1, client_id=1, address="a", port=1,
                         max_frame=max_frame, heartbeat_ms=0))
    return session



# -- clients that record --------------------------------------------------------------------


@dataclass
class Recorder(ChatClientHandler):
    """Records what a ChatClientProtocol reports."""

    hello: HelloOk | None = None
    indications: list[Message] = field(default_factory=list)
    responses: list[Message] = field(default_factory=list)
    closed_with: list[Exception | None] = field(default_factory=list)

    def ready(self, client: ChatClientProtocol, hello: HelloOk) -> None:
        self.hello = hello

    def indication(self, client: ChatClientProtocol, message: Message) -> None:
        self.indications.append(message)

    def response(self, client: ChatClientProtocol, response: Message) -> None:
        self.responses.append(response)

    def closed(self, client: ChatClientProtocol, exc: Exception | None) -> None:
        self.closed_with.append(exc)

    def of(self, cls: type[Message]) -> list[Any]:
        return [message for message in self.indications if isinstance(message, cls)]

    @property
    def messages(self) -> list[Incoming]:
        return self.of(Incoming)

    @property
    def left(self) -> list[Left]:
        return self.of(Left)

    @property
    def joined(self) -> list[Joined]:
        return self.of(Joined)

    @property
    def closing(self) -> list[Closing]:
        return self.of(Closing)


class Client:
    """A ChatClientProtocol, its recorder, and its transport once connected."""

    def __init__(self, loop: Loop, config: ChatClientConfig | None = None) -> None:
        self.recorder = Recorder()
        self.protocol = ChatClientProtocol(loop, self.recorder, config)

    @property
    def id(self) -> int:
        return self.protocol.client_id

    @property
    def ready(self) -> bool:
        return self.protocol.ready

    @property
    def closed(self) -> bool:
        return self.protocol.closed

    @property
    def transport(self) -> Transport:
        assert self.protocol.transport is not None
        return self.protocol.transport


class RawPeer(Protocol):
    """A peer that writes whatever bytes it is told to and records what comes back."""

    def __init__(self, initial: bytes = b"", *, eof_after: bool = False) -> None:
        self.initial = initial
        self.eof_after = eof_after
        self.transport: Transport | None = None
        self.received = bytearray()
        self.lost = False
        self.eof = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        if self.initial:
            transport.write(self.initial)
        if self.eof_after:
            transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def messages(self) -> list[Event]:
        session = ChatSession(Role.CLIENT, max_frame=16 * 1024 * 1024)
        session.receive_data(bytes(self.received))
        return drain(session)


@dataclass
class ChatRig:
    """A chat server on a loop (in the test thread), over one stream transport."""

    loop: Loop
    chat: ChatServer
    server: Any
    spec: StreamTransportSpec
    clients: list[Client] = field(default_factory=list)
    raw: list[RawPeer] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.port)

    def run_until(self, condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
        self.loop.run_until(condition, timeout=timeout)

    def connect(self, n: int = 1, config: ChatClientConfig | None = None) -> list[Client]:
        """`n` clients, connected and greeted."""
        new = [Client(self.loop, config) for _ in range(n)]
        for client in new:
            protocol = client.protocol
            self.spec.connect(lambda protocol=protocol: protocol, "127.0.0.1", self.port,
                              loop=self.loop)
        self.clients.extend(new)
        self.run_until(lambda: all(client.ready for client in new))
        return new

    def connect_raw(self, data: bytes = b"", *, eof_after: bool = False) -> RawPeer:
        peer = RawPeer(data, eof_after=eof_after)
        self.spec.connect(lambda: peer, "127.0.0.1", self.port, loop=self.loop)
        self.raw.append(peer)
        return peer

    def ask(self, client: Client, make: Callable[[Callable[[Message], None]], int]) -> Message:
        """Send one request (`make(callback)`), run until its answer, return it."""
        answers: list[Message] = []
        make(answers.append)
        self.run_until(lambda: bool(answers))
        return answers[0]


@contextmanager
def chat_rig(backend: str | None, transport: str = "tcp",
             config: ChatServerConfig | None = None,
             clock: Clock | None = None) -> Iterator[ChatRig]:
    """Server and clients on one loop in this thread; everything closed afterwards. Any
    exception escaping a protocol callback is recorded in `rig.errors` (and fails the
    test at the end). With `clock` (a FakeClock), timers fire without waiting and the
    tests assert times on that clock."""
    spec = stream_transport(transport)
    with Loop(backend, clock=clock) as loop:
        chat = ChatServer(loop, config or ChatServerConfig())
        server = spec.serve(chat.protocol_factory, "127.0.0.1", 0, loop=loop)
        rig = ChatRig(loop, chat, server, spec)
        loop.set_exception_handler(lambda _loop, context: rig.errors.append(context))
        try:
            yield rig
        finally:
            for client in rig.clients:
                if not client.closed and client.protocol.transport is not None:
                    client.protocol.transport.abort()
            for peer in rig.raw:
                if peer.transport is not None and not peer.lost:
                    peer.transport.abort()
            server.close()
            server.abort_clients()
            loop.run_until(lambda: not server.connections and all(
                client.closed or client.protocol.transport is None for client in rig.clients)
                and all(peer.lost or peer.transport is None for peer in rig.raw),
                timeout=DEADLINE)
            shutdown = getattr(server, "shutdown", None)
            if shutdown is not None:
                shutdown()
            for _ in range(3):
                loop.run_once(0)
    assert not rig.errors, f"exceptions escaped protocol callbacks: {rig.errors}"


# -- the CLI ------------------------------------------------------------------------------


def muxio_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), "PYTHONUNBUFFERED": "1"}


def run_chat(*args: str, stdin: Any = subprocess.DEVNULL,
             input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m muxio chat ARGS`, waited for."""
    return subprocess.run([sys.executable, "-m", "muxio", "chat", *args], stdin=None if (
        input_text is not None) else stdin, input=input_text, capture_output=True, text=True,
        timeout=DEADLINE, cwd=REPO, env=muxio_env(), check=False)


@contextmanager
def serve_chat(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`python -m muxio serve chat ARGS --port 0`; yields the process and its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "muxio", "serve", "chat", "--host", "127.0.0.1", "--port", "0",
         *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=muxio_env())
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "serving chat" not in line:
            process.kill()
            _, err = process.communicate(timeout=DEADLINE)
            raise AssertionError(f"server did not start: {line!r} {err[-2000:]}")
        port = int(line.split("127.0.0.1:")[1].split()[0].rstrip(","))
        yield process, port
    finally:
        stop(process)


__all__ = [
    "CLOSED", "DEADLINE", "NEED_DATA", "REPO", "SAMPLES", "ChatRig", "Client",
    "ErrorResponse", "GetList", "GetName", "GetTime", "Hello", "HelloOk", "Incoming",
    "InvalidFrame", "Joined", "Left", "ListOk", "RawPeer", "Recorder", "Send", "SendOk",
    "chat_rig", "drain", "encode", "feed_pieces", "greeted_server_session", "muxio_env",
    "random_splits", "run_chat", "serve_chat", "splits",
]
