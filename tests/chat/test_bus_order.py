"""The chat server with a bus (muxio.handlers.chat.bus), in one process with a fake bus
that answers when the test says: answers stay in request order while SENDs wait on the
bus, at most 64 are held per connection, BYE waits for them, a bus that is down refuses
logins and LIST falls back to this server's clients."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from muxio.handlers.chat import (
    ByeOk,
    ChatRefusedError,
    ChatServer,
    ClientEntry,
    ErrorCode,
    ErrorResponse,
    Incoming,
    ListOk,
    NameOk,
    SendOk,
    TimeOk,
    encode,
)
from muxio.handlers.chat.bus import (
    BusHost,
    ForwardCallback,
    ListCallback,
    RegisterCallback,
)
from muxio.loop import Loop
from muxio.transports import tcp
from tests.chat.harness import DEADLINE, Client


@dataclass
class FakeBus:
    """A ChatBus whose forwards wait in `forwards` until the test answers them."""

    loop: Loop
    is_up: bool = True
    host: BusHost | None = None
    next_id: int = 100
    forwards: list[tuple[int, bytes, ForwardCallback]] = field(default_factory=list)
    unregistered: list[int] = field(default_factory=list)
    remote: list[ClientEntry] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.is_up

    @property
    def description(self) -> str:
        return "the fake bus"

    def start(self, host: BusHost) -> None:
        self.host = host

    def register(self, address: str, port: int, done: RegisterCallback) -> None:
        self.next_id += 1
        self.loop.call_soon(done, self.next_id, "")

    def unregister(self, client_id: int, reason: int) -> None:
        self.unregistered.append(client_id)

    def forward(self, to: int, frame: bytes, done: ForwardCallback) -> None:
        self.forwards.append((to, frame, done))

    def list(self, done: ListCallback) -> None:
        if not self.is_up:
            self.loop.call_soon(done, None, "down")
            return
        assert self.host is not None
        entries: Sequence[ClientEntry] = sorted(
            [*self.host.bus_local_clients(), *self.remote], key=lambda e: e.client_id)
        self.loop.call_soon(done, entries, "")

    def close(self) -> None:
        pass


@dataclass
class Rig:
    loop: Loop
    bus: FakeBus
    chat: ChatServer
    port: int
    clients: list[Client] = field(default_factory=list)

    def client(self) -> Client:
        client = Client(self.loop)
        protocol = client.protocol
        tcp.connect(lambda: protocol, "127.0.0.1", self.port, loop=self.loop)
        self.clients.append(client)
        self.loop.run_until(lambda: client.ready or client.closed, timeout=DEADLINE)
        return client


@contextmanager
def rig() -> Iterator[Rig]:
    with Loop() as loop:
        bus = FakeBus(loop)
        chat = ChatServer(loop, bus=bus)
        server = tcp.serve(chat.protocol_factory, "127.0.0.1", 0, loop=loop)
        the_rig = Rig(loop, bus, chat, server.sockets[0].getsockname()[1])
        try:
            yield the_rig
        finally:
            for client in the_rig.clients:
                if client.protocol.transport is not None and not client.closed:
                    client.protocol.transport.abort()
            server.close()
            server.abort_clients()
            loop.run_until(lambda: not server.connections and all(
                client.closed or client.protocol.transport is None
                for client in the_rig.clients), timeout=DEADLINE)
            for _ in range(3):
                loop.run_once(0)


def test_answers_keep_request_order_while_sends_wait_on_the_bus() -> None:
    with rig() as r:
        a = r.client()
        assert a.ready and a.id == 101
        protocol = a.protocol
        with protocol.batch():
            protocol.send(500, "first")
            protocol.time()
            protocol.send(501, "second")
            protocol.name()
            protocol.bye()
        r.loop.run_until(lambda: len(r.bus.forwards) == 2, timeout=DEADLINE)
        assert a.recorder.responses == []  # TIME and NAME wait behind the first SEND
        # The bus answers the second SEND first: still nothing may pass the first.
        r.bus.forwards[1][2](ErrorCode.CLIENT_GONE, "client 501 has left")
        r.loop.run_once(0)
        assert a.recorder.responses == []
        r.bus.forwards[0][2](None, "")
        r.loop.run_until(lambda: a.closed, timeout=DEADLINE)
        kinds = [type(response) for response in a.recorder.responses]
        assert kinds == [SendOk, TimeOk, ErrorResponse, NameOk, ByeOk]
        ids = [response.request_id for response in a.recorder.responses]
        assert ids == sorted(ids)
        assert r.bus.unregistered == [101]
        assert r.chat.stats["forwarded"] == 1 and r.chat.stats["not_delivered"] == 1


def test_at_most_64_answers_are_held_then_reading_waits() -> None:
    with rig() as r:
        a = r.client()
        with a.protocol.batch():
            for n in range(70):
                a.protocol.send(1000 + n, f"message {n}")
        r.loop.run_until(lambda: len(r.bus.forwards) == 64, timeout=DEADLINE)
        for _ in range(5):
            r.loop.run_once(0)
        assert len(r.bus.forwards) == 64  # the 65th waits, as bytes in the session
        for _, _, done in list(r.bus.forwards):
            done(None, "")
        r.loop.run_until(lambda: len(r.bus.forwards) == 70, timeout=DEADLINE)
        for _, _, done in r.bus.forwards[64:]:
            done(None, "")
        r.loop.run_until(lambda: len(a.recorder.responses) == 70, timeout=DEADLINE)
        assert [response.to for response in a.recorder.responses] == list(range(1000, 1070))


def test_a_bus_that_is_down_refuses_logins_and_lists_this_server_only() -> None:
    with rig() as r:
        a, b = r.client(), r.client()
        r.bus.remote = [ClientEntry(7, "10.0.0.7", 7007)]
        answers: list[object] = []
        a.protocol.list(answers.append)
        r.loop.run_until(lambda: bool(answers), timeout=DEADLINE)
        listed = answers.pop()
        assert isinstance(listed, ListOk)
        assert [entry.client_id for entry in listed.clients] == [7, a.id, b.id]

        r.bus.is_up = False
        refused = r.client()
        assert refused.closed and not refused.ready
        error = refused.recorder.closed_with[0]
        assert isinstance(error, ChatRefusedError) and error.code == ErrorCode.SERVER_FULL
        assert "the chat directory (the fake bus) is unreachable" in str(error)
        a.protocol.list(answers.append)
        r.loop.run_until(lambda: bool(answers), timeout=DEADLINE)
        listed = answers.pop()
        assert isinstance(listed, ListOk)
        assert [entry.client_id for entry in listed.clients] == [a.id, b.id]
        a.protocol.send(b.id, "local", answers.append)  # no bus involved
        r.loop.run_until(lambda: bool(b.recorder.messages), timeout=DEADLINE)
        assert isinstance(answers.pop(), SendOk) and not r.bus.forwards


def test_messages_and_indications_from_the_bus_reach_local_clients() -> None:
    with rig() as r:
        a = r.client()
        host = r.bus.host
        assert host is not None
        host.bus_joined(ClientEntry(7, "10.0.0.7", 7007))
        frame = encode(Incoming(sender=7, address="10.0.0.7", port=7007, text="hi"))
        assert host.bus_deliver(a.id, frame)
        assert not host.bus_deliver(9999, frame)
        host.bus_left(7, 2)
        r.loop.run_until(lambda: bool(a.recorder.left), timeout=DEADLINE)
        assert [j.client.client_id for j in a.recorder.joined] == [7]
        assert [(m.sender, m.text) for m in a.recorder.messages] == [(7, "hi")]
        assert [(left.client_id, left.reason) for left in a.recorder.left] == [(7, 2)]
