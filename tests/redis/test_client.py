"""The Redis connection and link (muxio.handlers.redis.client) against an in-memory fake
Redis on a FakeClock: pipelining, pushes, every bound, timeouts and reconnect backoff."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from muxio.handlers.redis import (
    NEED_DATA,
    RedisBusy,
    RedisLimits,
    RedisLink,
    RedisUnavailable,
    Reply,
    RespParser,
    RespValue,
    encode_reply,
)
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.clock import FakeClock
from muxio.testing.memory import memory_pair


class FakeRedis(Protocol):
    """Answers each command with `answer(args)` (None: stays silent)."""

    def __init__(self, answer: Callable[[list[bytes]], RespValue | None]) -> None:
        self.answer = answer
        self.parser = RespParser()
        self.commands: list[list[bytes]] = []
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        while (command := self.parser.next_reply()) is not NEED_DATA:
            assert isinstance(command, list)
            args = [arg for arg in command if isinstance(arg, bytes)]
            self.commands.append(args)
            reply = self.answer(args)
            if reply is not None and self.transport is not None:
                self.transport.write(encode_reply(reply))

    def push(self, channel: bytes, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(encode_reply([b"message", channel, data]))


def echo(args: list[bytes]) -> RespValue:
    return args[-1]


@pytest.fixture
def fake_loop() -> Iterator[Loop]:
    with Loop("select", clock=FakeClock()) as loop:
        yield loop


class Rig:
    """A RedisLink whose connector joins it to a new FakeRedis, or fails while `down`."""

    def __init__(self, loop: Loop, answer: Callable[[list[bytes]], RespValue | None] = echo,
                 limits: RedisLimits | None = None) -> None:
        self.loop = loop
        self.answer = answer
        self.down = False
        self.attempts: list[float] = []
        self.servers: list[FakeRedis] = []
        self.events: list[str] = []
        self.messages: list[tuple[bytes, bytes]] = []
        self.link = RedisLink(loop, self.connect, name="fake", limits=limits or RedisLimits(),
                              on_up=lambda: self.events.append("up"),
                              on_down=lambda reason: self.events.append("down"),
                              on_message=lambda channel, data: self.messages.append(
                                  (channel, data)))

    def connect(self, factory: Callable[[], Protocol],
                on_error: Callable[[Exception], object]) -> None:
        self.attempts.append(self.loop.time())
        if self.down:
            self.loop.call_soon(on_error, ConnectionRefusedError("refused"))
            return
        server = FakeRedis(self.answer)
        self.servers.append(server)
        memory_pair(self.loop, factory(), server)

    def ask(self, *args: str) -> Reply:
        replies: list[Reply] = []
        self.link.command(*args, callback=replies.append)
        self.loop.run_until(lambda: bool(replies), timeout=60)
        return replies[0]


def test_pipelined_commands_are_answered_in_order_and_pushes_go_aside(fake_loop: Loop) -> None:
    loop = fake_loop
    rig = Rig(loop)
    rig.link.start()
    loop.run_until(lambda: rig.link.up, timeout=10)
    replies: list[Reply] = []
    for n in range(5):
        rig.link.command("ECHO", str(n), callback=replies.append)
    rig.servers[0].push(b"chan", b"hello")
    loop.run_until(lambda: len(replies) == 5 and bool(rig.messages), timeout=10)
    assert replies == [b"0", b"1", b"2", b"3", b"4"]
    assert rig.messages == [(b"chan", b"hello")]
    rig.link.close()


def test_commands_past_max_pending_are_refused_later_not_inline(fake_loop: Loop) -> None:
    loop = fake_loop
    rig = Rig(loop, answer=lambda args: None, limits=RedisLimits(max_pending=3))
    rig.link.start()
    loop.run_until(lambda: rig.link.up, timeout=10)
    replies: list[Reply] = []
    for _ in range(4):
        rig.link.command("GET", "k", callback=replies.append)
    assert replies == []  # never called from inside command()
    loop.run_until(lambda: bool(replies), timeout=1)
    assert isinstance(replies[0], RedisBusy) and "3 Redis commands" in str(replies[0])
    rig.link.close()


def test_bytes_past_max_output_are_refused(fake_loop: Loop) -> None:
    loop = fake_loop
    rig = Rig(loop, limits=RedisLimits(max_output=100))
    rig.link.start()
    loop.run_until(lambda: rig.link.up, timeout=10)
    reply = rig.ask("SET", "k", "x" * 200)
    assert isinstance(reply, RedisBusy) and "100 bytes" in str(reply)
    assert rig.servers[0].commands == []
    rig.link.close()


def test_an_unanswered_command_drops_the_connection_then_it_reconnects(fake_loop: Loop) -> None:
    loop = fake_loop
    silent = {"on": True}
    rig = Rig(loop, answer=lambda args: None if silent["on"] else args[-1],
              limits=RedisLimits(command_timeout=2.0, backoff_min=0.5))
    rig.link.start()
    loop.run_until(lambda: rig.link.up, timeout=10)
    sent = loop.time()
    reply = rig.ask("GET", "k")
    assert isinstance(reply, RedisUnavailable) and "lost" in str(reply)
    assert loop.time() - sent == pytest.approx(2.0, abs=0.01)  # FakeClock time, not real
    silent["on"] = False
    loop.run_until(lambda: rig.link.up, timeout=10)
    assert rig.events == ["up", "down", "up"] and rig.link.reconnects == 1
    assert rig.ask("ECHO", "back") == b"back"
    rig.link.close()


def test_garbage_from_redis_drops_the_connection(fake_loop: Loop) -> None:
    loop = fake_loop
    rig = Rig(loop, answer=lambda args: None)
    rig.link.start()
    loop.run_until(lambda: rig.link.up, timeout=10)
    replies: list[Reply] = []
    rig.link.command("GET", "k", callback=replies.append)
    server = rig.servers[0]
    loop.run_until(lambda: bool(server.commands), timeout=10)
    assert server.transport is not None
    server.transport.write(b"?what\r\n")
    loop.run_until(lambda: bool(replies), timeout=10)
    assert isinstance(replies[0], RedisUnavailable) and "down" in rig.events
    rig.link.close()


def test_reconnect_backoff_doubles_up_to_its_cap_and_resets(fake_loop: Loop) -> None:
    loop = fake_loop
    rig = Rig(loop, limits=RedisLimits(backoff_min=0.1, backoff_max=0.8))
    rig.down = True
    rig.link.start()
    loop.run_until(lambda: len(rig.attempts) == 7, timeout=60)
    gaps = [round(b - a, 3) for a, b in zip(rig.attempts, rig.attempts[1:], strict=False)]
    assert gaps == [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]
    reply = rig.ask("GET", "k")
    assert isinstance(reply, RedisUnavailable) and "unreachable" in str(reply)
    rig.down = False
    loop.run_until(lambda: rig.link.up, timeout=60)
    rig.down = True
    assert rig.servers[-1].transport is not None
    rig.servers[-1].transport.abort()
    loop.run_until(lambda: len(rig.attempts) == 10, timeout=60)
    assert round(rig.attempts[-1] - rig.attempts[-2], 3) == 0.2  # starts over from 0.1
    rig.link.close()
    count = len(rig.attempts)
    loop.run_until(lambda: loop.time() > rig.attempts[-1] + 5, timeout=60)
    assert len(rig.attempts) == count  # closed: no more attempts
