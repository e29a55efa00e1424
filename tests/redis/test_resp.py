"""The RESP2 codec (muxio.handlers.redis.resp): replies in any split, every bound, and
garbage that never gets anything but RespProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muxio.handlers.redis.resp import (
    NEED_DATA,
    RedisError,
    RespParser,
    RespProtocolError,
    RespValue,
    encode_command,
    encode_reply,
)

values: st.SearchStrategy[RespValue] = st.recursive(
    st.none() | st.binary(max_size=64) | st.integers(-(2**63), 2**63 - 1)
    | st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
            max_size=20).map(RedisError),
    lambda children: st.lists(children, max_size=5), max_leaves=20)


def comparable(value: RespValue) -> object:
    """Error replies compare by text (exceptions compare by identity)."""
    if isinstance(value, RedisError):
        return ("error", str(value))
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def parse_all(parser: RespParser, pieces: list[bytes]) -> list[RespValue]:
    replies: list[RespValue] = []
    for piece in pieces:
        parser.feed(piece)
        while (reply := parser.next_reply()) is not NEED_DATA:
            assert not isinstance(reply, type(NEED_DATA))
            replies.append(reply)
    return replies


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode_command("SET", b"k\r\n", 42) == (
        b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n")
    assert encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"


def test_every_reply_type() -> None:
    data = (b"+OK\r\n-NOSCRIPT No matching script\r\n:-12\r\n$5\r\nhe\r\no\r\n$-1\r\n"
            b"*-1\r\n*0\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n")
    replies = parse_all(RespParser(), [data])
    assert comparable(replies) == [b"OK", ("error", "NOSCRIPT No matching script"), -12,
                                   b"he\r\no", None, None, [], [[1], b""]]
    error = replies[1]
    assert isinstance(error, RedisError) and error.kind == "NOSCRIPT"


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=1, max_size=5), st.data())
def test_any_split_gives_the_same_replies(replies: list[RespValue], data: st.DataObject) -> None:
    stream = b"".join(encode_reply(value) for value in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    pieces = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)],
                                                      strict=True)]
    parser = RespParser()
    assert comparable(parse_all(parser, pieces)) == comparable(replies)
    assert parser.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_the_protocol_error(data: bytes) -> None:
    parser = RespParser(max_bulk=64, max_elements=16, max_depth=3, max_line=32,
                        max_reply=256)
    try:
        parse_all(parser, [data[:7], data[7:]])
    except RespProtocolError:
        with pytest.raises(RespProtocolError):  # and the stream stays broken
            parser.next_reply()
    assert parser.buffered <= len(data)


@pytest.mark.parametrize(("data", "limits", "message"), [
    (b"$65\r\n", {"max_bulk": 64}, "bulk string of 65 bytes"),
    (b"*3\r\n*3\r\n", {"max_elements": 5}, "more than 5 elements"),
    (b"*1\r\n*1\r\n*1\r\n", {"max_depth": 2}, "nested deeper than 2"),
    (b"+" + b"x" * 40, {"max_line": 32}, "longer than 32 bytes"),
    (b"*4\r\n" + b"$10\r\n0123456789\r\n" * 3, {"max_reply": 40}, "longer than 40 bytes"),
    (b"?\r\n", {}, "unknown reply type"),
    (b":12a\r\n", {}, "not an integer"),
    (b":\r\n", {}, "not an integer"),
    (b"$-2\r\n", {}, "length -2"),
    (b"*-5\r\n", {}, "length -5"),
    (b"$2\r\nabcd", {}, "does not end with CRLF"),
    (b"\r\n", {}, "empty reply line"),
])
def test_bounds_and_malformed_replies(data: bytes, limits: dict[str, int],
                                      message: str) -> None:
    parser = RespParser(**limits)
    parser.feed(data)
    with pytest.raises(RespProtocolError, match=message):
        parser.next_reply()


def test_a_long_line_is_refused_before_its_end_arrives() -> None:
    """A peer that never sends CRLF cannot make the parser hold more than max_line."""
    parser = RespParser(max_line=100)
    parser.feed(b"+" + b"x" * 99)
    assert parser.next_reply() is NEED_DATA
    parser.feed(b"xx")
    with pytest.raises(RespProtocolError):
        parser.next_reply()


def test_a_bulk_header_is_checked_before_its_body_is_held() -> None:
    parser = RespParser(max_bulk=1000)
    parser.feed(b"$1000000000\r\n")
    with pytest.raises(RespProtocolError, match="limit is 1000"):
        parser.next_reply()


def test_the_buffer_is_compacted_as_replies_are_taken() -> None:
    parser = RespParser()
    for _ in range(1000):
        parser.feed(b":1\r\n")
        assert parser.next_reply() == 1
    assert len(parser._buffer) < 100
