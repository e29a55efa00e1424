"""muxio's Redis client against a real redis-server, on every backend of the matrix: the
same loop as the servers it serves (what `muxio serve chat --bus` relies on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from muxio.cli.services.chat import tcp_connector
from muxio.handlers.redis import RedisError, RedisLink, Reply
from muxio.loop import Loop
from tests.redis.server import DEADLINE, Redis
from tests.tools import require_tool


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(require_tool("redis-server", "redis-server"),
                   Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_commands_pipelines_and_pushes_on_every_backend(backend: str, redis: Redis) -> None:
    with Loop(backend) as loop:
        messages: list[tuple[bytes, bytes]] = []
        connector = tcp_connector(loop, "127.0.0.1", redis.port, 5.0)
        link = RedisLink(loop, connector, name="test")
        subscriber = RedisLink(loop, connector, name="test-sub",
                               on_message=lambda channel, data: messages.append((channel,
                                                                                 data)))
        try:
            link.start()
            subscriber.start()
            loop.run_until(lambda: link.up and subscriber.up, timeout=DEADLINE)
            replies: list[Reply] = []
            key = f"muxio:test:{backend}"
            link.command("DEL", key, callback=replies.append)
            for n in range(1000):  # one loop iteration: one write, replies in order
                link.command("RPUSH", key, n, callback=replies.append)
            link.command("LRANGE", key, 998, -1, callback=replies.append)
            link.command("HGET", key, "x", callback=replies.append)  # WRONGTYPE
            subscribed: list[Reply] = []
            subscriber.command("SUBSCRIBE", key, callback=subscribed.append)
            loop.run_until(lambda: len(replies) == 1003 and bool(subscribed),
                           timeout=DEADLINE)
            assert replies[1:1001] == list(range(1, 1001))
            assert replies[1001] == [b"998", b"999"]
            error = replies[1002]
            assert isinstance(error, RedisError) and error.kind == "WRONGTYPE"
            assert subscribed == [[b"subscribe", key.encode(), 1]]
            payload = bytes(range(256)) * 40  # binary, over several reads
            link.command("PUBLISH", key, payload, callback=replies.append)
            loop.run_until(lambda: bool(messages) and len(replies) == 1004,
                           timeout=DEADLINE)
            assert replies[1003] == 1 and messages == [(key.encode(), payload)]
            link.command("DEL", key, callback=replies.append)
            loop.run_until(lambda: len(replies) == 1005, timeout=DEADLINE)
        finally:
            link.close()
            subscriber.close()
            for _ in range(5):
                loop.run_once(0)
