"""The server and client handlers over the in-memory transport on a fake clock: heartbeats
to the millisecond, flow control, slow receivers, limits. No sockets, no waiting."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from muxio.handlers.chat import (
    ChatClientConfig,
    ChatRefusedError,
    ChatServer,
    ChatServerConfig,
    ChatServerProtocol,
    ChatTimeoutError,
    ErrorCode,
    Event,
    InvalidFrame,
    LeaveReason,
    Message,
    encode,
)
from muxio.handlers.chat.messages import (
    HEADER,
    ErrorResponse,
    GetList,
    GetTime,
    Hello,
    HelloOk,
    Left,
    ListOk,
    Ping,
    SendOk,
    TimeOk,
)
from muxio.loop import Loop
from muxio.testing.clock import FakeClock
from muxio.testing.memory import MemoryTransport, memory_pair
from tests.chat.harness import Client, RawPeer

pytestmark = pytest.mark.filterwarnings("error")


@dataclass
class MemoryRig:
    loop: Loop
    clock: FakeClock
    chat: ChatServer
    server_sides: list[ChatServerProtocol] = field(default_factory=list)

    def run_until(self, condition: object, timeout: float = 1000.0) -> None:
        self.loop.run_until(condition, timeout=timeout)  # type: ignore[arg-type]

    def advance(self, seconds: float) -> None:
        """Run the loop for `seconds` of fake time (a timer there stops the jump)."""
        done: list[bool] = []
        self.loop.call_later(seconds, done.append, True)
        self.run_until(lambda: bool(done))

    def attach(self, protocol: object, chat: ChatServer | None = None) -> ChatServerProtocol:
        server_side = (chat or self.chat).protocol_factory()
        memory_pair(self.loop, protocol, server_side)  # type: ignore[arg-type]
        self.server_sides.append(server_side)
        return server_side

    def client(self, config: ChatClientConfig | None = None) -> Client:
        client = Client(self.loop, config)
        self.attach(client.protocol)
        self.run_until(lambda: client.ready or client.closed)
        return client

    def raw(self, *messages: Message) -> tuple[RawPeer, ChatServerProtocol]:
        peer = RawPeer(b"".join(encode(message) for message in messages))
        return peer, self.attach(peer)


@contextmanager
def memory_rig(**config: object) -> Iterator[MemoryRig]:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        chat = ChatServer(loop, ChatServerConfig(**config), hostname="testhost",  # type: ignore[arg-type]
                          wall_clock=lambda: 1_700_000_000.25)
        rig = MemoryRig(loop, clock, chat)
        yield rig
        for side in rig.server_sides:
            if side.transport is not None:
                side.transport.abort()
        for _ in range(5):
            loop.run_once(0)


def frames(peer: RawPeer) -> list[Event]:
    return peer.messages()


def test_silent_peer_is_pinged_then_dropped_exactly_on_time() -> None:
    with memory_rig(heartbeat_interval=2.0, heartbeat_misses=3) as rig:
        watcher = rig.client()
        silent, side = rig.raw(Hello(request_id=1))
        rig.run_until(lambda: side.ready)
        greeted_at = rig.loop.time()
        rig.run_until(lambda: side.dropped)
        assert rig.loop.time() - greeted_at == pytest.approx(6.0)  # interval x misses
        pings = [event for event in frames(silent) if isinstance(event, Ping)]
        assert len(pings) == 2  # at 2 s and 4 s: misses - 1 chances to answer
        assert side.client_id not in rig.chat.clients
        rig.run_until(lambda: bool(watcher.recorder.left))
        assert watcher.recorder.left == [Left(client_id=side.client_id,
                                              reason=LeaveReason.TIMEOUT)]
        rig.run_until(lambda: silent.lost)
        assert rig.chat.stats["dropped_timeout"] == 1
        assert watcher.id in rig.chat.clients  # it answered the server's PINGs


def test_answering_client_stays_for_many_intervals() -> None:
    with memory_rig(heartbeat_interval=1.0, heartbeat_misses=2) as rig:
        client = rig.client()
        rig.advance(50.0)
        assert client.ready and client.id in rig.chat.clients
        assert client.protocol.heartbeat is not None
        assert client.recorder.closed_with == []


def test_busy_peer_is_never_pinged() -> None:
    with memory_rig(heartbeat_interval=1.0, heartbeat_misses=2) as rig:
        peer, side = rig.raw(Hello(request_id=1))
        rig.run_until(lambda: side.ready)
        for request_id in range(2, 40):  # a request every 0.5 s for 19 s
            assert peer.transport is not None
            peer.transport.write(encode(GetTime(request_id=request_id)))
            rig.advance(0.5)
        assert side.heartbeat.pings_sent == 0 and not side.dropped


def test_client_gives_up_on_a_silent_server() -> None:
    with memory_rig() as rig:
        hello_ok = HelloOk(request_id=1, version=1, client_id=1, address="x", port=0,
                           max_frame=65536, heartbeat_ms=1000)
        fake_server = RawPeer(encode(hello_ok))
        client = Client(rig.loop, ChatClientConfig(heartbeat_misses=4))
        memory_pair(rig.loop, client.protocol, fake_server)
        rig.run_until(lambda: client.ready)
        ready_at = rig.loop.time()
        rig.run_until(lambda: client.closed)
        assert rig.loop.time() - ready_at == pytest.approx(4.0)
        [error] = client.recorder.closed_with
        assert isinstance(error, ChatTimeoutError) and "no frame from the server" in str(error)
        assert sum(isinstance(event, Ping) for event in _server_view(fake_server)) == 3


def _server_view(peer: RawPeer) -> list[Event]:
    from muxio.handlers.chat import ChatSession, Role
    from tests.chat.harness import drain

    session = ChatSession(Role.SERVER)
    session.receive_data(bytes(peer.received))
    return drain(session)


def test_slow_receiver_is_dropped_and_the_sender_told(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "muxio.chat")
    with memory_rig(max_output_buffer=256 * 1024) as rig:
        sender = rig.client()
        receiver, side = rig.raw(Hello(request_id=1))
        rig.run_until(lambda: side.ready)
        assert receiver.transport is not None
        receiver.transport.pause_reading()  # never reads again
        text = "m" * 8000
        answers: list[Message] = []
        for _ in range(100):
            sender.protocol.send(side.client_id, text, answers.append)
        rig.run_until(lambda: len(answers) == 100)
        delivered = [a for a in answers if isinstance(a, SendOk)]
        failed = [a for a in answers if isinstance(a, ErrorResponse)]
        assert 20 <= len(delivered) <= 256 * 1024 // 8000
        assert failed[0].code == ErrorCode.NOT_DELIVERED
        assert {a.code for a in failed[1:]} == {ErrorCode.CLIENT_GONE}
        assert answers == delivered + failed  # in order: delivered until the limit
        assert "slow receiver" in caplog.text and f"client {side.client_id}" in caplog.text
        rig.run_until(lambda: bool(sender.recorder.left))
        assert sender.recorder.left[0].reason == LeaveReason.SLOW_RECEIVER
        rig.run_until(lambda: receiver.lost)
        assert rig.chat.stats["dropped_slow"] == 1


def test_a_client_that_does_not_read_stalls_only_itself() -> None:
    with memory_rig() as rig:
        other = rig.client()
        count = 20_000
        requests = [Hello(request_id=1), *(GetTime(request_id=i) for i in range(2, count + 2))]
        greedy, side = rig.raw()
        assert greedy.transport is not None
        greedy.transport.pause_reading()
        greedy.transport.write(b"".join(encode(message) for message in requests))
        # Reading is paused at once (a turn handles frames_per_turn frames, the rest
        # waits); the server stops for good when its answers pass the high-water mark.
        rig.run_until(lambda: side.session.buffered > 0 and side.transport is not None
                      and not side.transport.is_reading()
                      and side.transport.get_write_buffer_size() > 64 * 1024)
        assert side.transport is not None
        waiting = side.transport.get_write_buffer_size()
        assert 64 * 1024 < waiting < 100 * 1024  # high water + one flush, not 20000 answers
        answer: list[Message] = []
        other.protocol.time(answer.append)
        rig.run_until(lambda: bool(answer))  # the server still serves everyone else
        greedy.transport.resume_reading()
        rig.run_until(lambda: len(greedy.received) >= len(_expected_times(count)))
        events = frames(greedy)
        assert [getattr(event, "request_id", None) for event in events] == list(
            range(1, count + 2))


def _expected_times(count: int) -> bytes:
    sample = encode(TimeOk(request_id=1, unix_ms=1_700_000_000_250,
                           text="2023-11-14T22:13:20.250+00:00"))
    return b"x" * (len(sample) * count)


def test_long_list_is_split_into_frames_and_joined_by_the_client() -> None:
    with memory_rig(max_frame=1024) as rig:
        clients = [rig.client() for _ in range(120)]
        peer, _side = rig.raw(Hello(request_id=1), GetList(request_id=2))
        rig.run_until(lambda: any(isinstance(e, ListOk) and not e.more for e in frames(peer)))
        parts = [event for event in frames(peer) if isinstance(event, ListOk)]
        assert len(parts) >= 2 and [part.more for part in parts][-1] is False
        assert all(part.more for part in parts[:-1])
        assert all(len(encode(part)) - 4 <= 1024 for part in parts)
        listed: list[Message] = []
        clients[0].protocol.list(listed.append)
        rig.run_until(lambda: bool(listed))
        [whole] = listed
        assert isinstance(whole, ListOk) and not whole.more
        assert [entry.client_id for entry in whole.clients] == sorted(rig.chat.clients)
        assert len(whole.clients) == 121


def test_server_full_refuses_hello() -> None:
    with memory_rig(max_clients=2) as rig:
        rig.client()
        rig.client()
        third = rig.client()
        assert third.closed and not third.ready
        [error] = third.recorder.closed_with
        assert isinstance(error, ChatRefusedError) and error.code == ErrorCode.SERVER_FULL
        assert len(rig.chat.clients) == 2


def test_unsupported_version_keeps_the_connection_for_another_hello() -> None:
    with memory_rig() as rig:
        peer, side = rig.raw(Hello(request_id=1, version=9))
        rig.run_until(lambda: bool(peer.received))
        [error] = frames(peer)
        assert isinstance(error, ErrorResponse) and error.code == ErrorCode.UNSUPPORTED_VERSION
        assert "speaks 1" in error.description
        assert peer.transport is not None
        peer.transport.write(encode(Hello(request_id=2)))
        rig.run_until(lambda: side.ready)
        refused = rig.client(ChatClientConfig(version=2))
        [exc] = refused.recorder.closed_with
        assert isinstance(exc, ChatRefusedError)
        assert exc.code == ErrorCode.UNSUPPORTED_VERSION


def test_forwarding_errors_and_text_limit() -> None:
    with memory_rig(max_frame=4096) as rig:
        a, b = rig.client(), rig.client()
        answers: list[Message] = []
        a.protocol.send(b.id, "x" * (4096 - 128), answers.append)
        a.protocol.send(b.id, "x" * (4096 - 127), answers.append)
        a.protocol.send(a.id, "me", answers.append)
        a.protocol.send(0, "zero", answers.append)
        a.protocol.send(77, "nobody", answers.append)
        rig.run_until(lambda: len(answers) == 5)
        assert isinstance(answers[0], SendOk)
        assert [getattr(x, "code", None) for x in answers[1:]] == [
            ErrorCode.TEXT_TOO_LONG, ErrorCode.SEND_TO_SELF, ErrorCode.NO_SUCH_CLIENT,
            ErrorCode.NO_SUCH_CLIENT]
        assert a.protocol.max_text == 4096 - 128


def test_invalid_frames_are_answered_until_the_limit() -> None:
    with memory_rig(max_protocol_errors=5) as rig:
        watcher = rig.client()
        unknown = HEADER.pack(5, 0x3C, 0)
        peer, side = rig.raw(Hello(request_id=1))
        rig.run_until(lambda: side.ready)
        assert peer.transport is not None
        peer.transport.write(unknown * 4 + encode(GetTime(request_id=2)))
        rig.run_until(lambda: any(isinstance(e, TimeOk) for e in frames(peer)))
        errors = [e for e in frames(peer) if isinstance(e, ErrorResponse)]
        assert [e.code for e in errors] == [ErrorCode.UNKNOWN_TYPE] * 4
        assert not side.dropped  # a valid frame reset the count
        peer.transport.write(unknown * 5)
        rig.run_until(lambda: peer.lost)
        rig.run_until(lambda: bool(watcher.recorder.left))
        assert watcher.recorder.left[0].reason == LeaveReason.PROTOCOL_ERRORS


def test_bye_eof_and_shutdown() -> None:
    with memory_rig() as rig:
        a, b, c = rig.client(), rig.client(), rig.client()
        b.protocol.bye()
        rig.run_until(lambda: b.closed)
        assert b.recorder.closed_with == [None]
        peer, side = rig.raw(Hello(request_id=1), GetTime(request_id=2))
        assert peer.transport is not None
        rig.run_until(lambda: side.ready)
        peer.transport.write_eof()
        rig.run_until(lambda: peer.lost)
        assert any(isinstance(e, TimeOk) for e in frames(peer))
        rig.run_until(lambda: len(a.recorder.left) == 2)
        assert [left.reason for left in a.recorder.left] == [LeaveReason.BYE, LeaveReason.CLOSED]
        rig.chat.close("maintenance")
        rig.run_until(lambda: a.closed and c.closed)
        assert [closing.reason for closing in a.recorder.closing] == ["maintenance"]
        late = Client(rig.loop)
        rig.attach(late.protocol)
        rig.run_until(lambda: late.closed)
        assert late.recorder.closing and not late.ready


def test_two_servers_do_not_share_clients() -> None:
    with memory_rig() as rig:
        other = ChatServer(rig.loop)
        a = rig.client()
        b = Client(rig.loop)
        rig.attach(b.protocol, other)
        rig.run_until(lambda: b.ready)
        assert list(rig.chat.clients) == [a.id] and list(other.clients) == [b.id]
        assert a.id == b.id == 1
        answers: list[Message] = []
        a.protocol.send(2, "x", answers.append)
        rig.run_until(lambda: bool(answers))
        assert isinstance(answers[0], ErrorResponse)
        assert answers[0].code == ErrorCode.NO_SUCH_CLIENT


def test_time_and_name_come_from_the_server_object() -> None:
    with memory_rig() as rig:
        client = rig.client()
        answers: list[Message] = []
        client.protocol.time(answers.append)
        client.protocol.name(answers.append)
        rig.run_until(lambda: len(answers) == 2)
        time_ok, name_ok = answers
        assert isinstance(time_ok, TimeOk) and time_ok.unix_ms == 1_700_000_000_250
        assert time_ok.text.startswith("2023-11-1") and ".250" in time_ok.text
        assert getattr(name_ok, "name", None) == "testhost"


def test_memory_transport_reports_names_as_addresses() -> None:
    with memory_rig() as rig:
        client = rig.client()
        assert client.recorder.hello is not None
        assert (client.recorder.hello.address, client.recorder.hello.port) == ("client", 0)
        side = rig.server_sides[0]
        assert isinstance(side.transport, MemoryTransport)
        assert not isinstance(side, InvalidFrame)
        assert repr(side).startswith("<ChatServerProtocol #1")


def test_config_errors_name_the_setting() -> None:
    with pytest.raises(ValueError, match="ChatServerConfig.heartbeat_misses must be >= 2"):
        ChatServerConfig(heartbeat_misses=1)
    with pytest.raises(ValueError, match="ChatServerConfig.heartbeat_interval"):
        ChatServerConfig(heartbeat_interval=0)
    with pytest.raises(ValueError, match="ChatServerConfig.max_frame must be between"):
        ChatServerConfig(max_frame=100)
    with pytest.raises(ValueError, match="ChatServerConfig.max_output_buffer must be at least"):
        ChatServerConfig(max_output_buffer=1000)
    with pytest.raises(ValueError, match="ChatClientConfig.heartbeat_misses"):
        ChatClientConfig(heartbeat_misses=0)
    with pytest.raises(ValueError, match="ChatClientConfig.version"):
        ChatClientConfig(version=0)
