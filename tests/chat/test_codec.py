"""The sans-I/O codec: every message round-trips, a stream of frames decodes the same in
every split, broken frames are reported without losing sync, memory stays bounded."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxio.handlers.chat import (
    CLOSED,
    MESSAGE_TYPES,
    ChatUsageError,
    ClientEntry,
    ErrorCode,
    FrameDecoder,
    InvalidFrame,
    Message,
    decode,
    encode,
)
from muxio.handlers.chat.messages import (
    HEADER,
    ErrorResponse,
    GetTime,
    Hello,
    Incoming,
    ListOk,
    Send,
    SendOk,
)
from tests.chat.harness import (
    REPO,
    SAMPLES,
    drain,
    feed_pieces,
    greeted_server_session,
    random_splits,
    splits,
)

client_stream = b"".join(encode(message) for message in SAMPLES)


def decoded(pieces: list[bytes], max_frame: int = 1 << 20) -> list[object]:
    """Frames decoded from pieces, each as a Message (or the error)."""
    decoder = FrameDecoder(max_frame)
    out: list[object] = []
    for piece in [*(piece for piece in pieces if piece), b""]:  # b"" is EOF
        decoder.feed(piece)
        while True:
            frame = decoder.next_frame()
            if frame is CLOSED or type(frame).__name__ == "NeedDataType":
                break
            if isinstance(frame, tuple):
                out.append(decode(*frame))
            else:
                out.append(frame)
        if frame is CLOSED:
            break
    return out


def test_samples_cover_every_message_type() -> None:
    assert {type(message) for message in SAMPLES} == set(MESSAGE_TYPES.values())


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    frame = encode(message)
    length, type_code, request_id = HEADER.unpack_from(frame)
    assert length == len(frame) - 4
    assert type_code == message.TYPE and request_id == message.request_id
    assert decode(type_code, request_id, frame[9:]) == message


def test_one_byte_at_a_time() -> None:
    assert decoded(list(splits(client_stream, [1]))) == SAMPLES


def test_every_two_piece_split() -> None:
    for cut in range(len(client_stream) + 1):
        assert decoded([client_stream[:cut], client_stream[cut:]]) == SAMPLES, cut


@pytest.mark.parametrize("seed", range(20))
def test_random_splits(seed: int) -> None:
    assert decoded(random_splits(client_stream, seed)) == SAMPLES


# -- hypothesis: generated messages, cut anywhere -----------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)
texts = st.text(max_size=200)
entries = st.builds(ClientEntry, u32, st.text(max_size=64), u16)
messages = st.one_of(
    st.builds(Hello, request_id=u32, version=u16),
    st.builds(GetTime, request_id=u32),
    st.builds(Send, request_id=u32, to=u32, text=texts),
    st.builds(SendOk, request_id=u32, to=u32),
    st.builds(ListOk, request_id=u32, clients=st.lists(entries, max_size=20).map(tuple),
              more=st.booleans()),
    st.builds(ErrorResponse, request_id=u32, code=u16, request_type=st.integers(0, 255),
              description=texts),
    st.builds(Incoming, sender=u32, address=st.text(max_size=64), port=u16, text=texts),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=20), st.lists(st.integers(1, 300), min_size=1))
def test_generated_messages_in_any_split(batch: list[Message], sizes: list[int]) -> None:
    stream = b"".join(encode(message) for message in batch)
    assert decoded(list(splits(stream, sizes))) == batch


# -- broken frames: reported, stream stays in sync ----------------------------------------

GOOD = encode(GetTime(request_id=77))


def server_events(data: bytes, max_frame: int = 65536, pieces: int = 1) -> list[object]:
    """Events of a fresh server session fed `data` + a valid TIME frame, plus EOF."""
    session = greeted_server_session(max_frame)
    stream = data + GOOD
    size = max(1, len(stream) // pieces)
    return list(feed_pieces(session, splits(stream, [size]), eof=True))


def codes(events: Sequence[object]) -> list[object]:
    return [event.code if isinstance(event, InvalidFrame) else type(event).__name__
            if isinstance(event, Message) else event for event in events]


@pytest.mark.parametrize(("frame", "code"), [
    (HEADER.pack(6, 0x03, 9) + b"x", ErrorCode.MALFORMED_FRAME),  # NAME with a body
    (HEADER.pack(6, 0x02, 9) + b"x", ErrorCode.MALFORMED_FRAME),  # trailing byte
    (HEADER.pack(6, 0x05, 9) + b"x", ErrorCode.MALFORMED_FRAME),  # SEND too short
    (HEADER.pack(13, 0x05, 9) + b"\0\0\0\2\0\2\xff\xfe", ErrorCode.MALFORMED_FRAME),  # UTF-8
    (HEADER.pack(12, 0x05, 9) + b"\0\0\0\2\0\2\xed", ErrorCode.MALFORMED_FRAME),  # short str
    (HEADER.pack(8, 0x44, 9) + b"\x02\0\0", ErrorCode.MALFORMED_FRAME),  # unknown flags
    (HEADER.pack(5, 0x3C, 9), ErrorCode.UNKNOWN_TYPE),
    (HEADER.pack(5, 0xFF, 9), ErrorCode.UNKNOWN_TYPE),
    (b"\0\0\0\0", ErrorCode.MALFORMED_FRAME),  # length 0
    (b"\0\0\0\3\x02\0\0", ErrorCode.MALFORMED_FRAME),  # length < 5
])
@pytest.mark.parametrize("pieces", [1, 3, 1000])
def test_broken_frame_is_reported_and_the_next_one_decodes(frame: bytes, code: int,
                                                            pieces: int) -> None:
    events = server_events(frame, pieces=pieces)
    assert codes(events) == [code, "GetTime", CLOSED]
    assert events[1] == GetTime(request_id=77)


def test_errors_name_the_request() -> None:
    [invalid, *_] = server_events(HEADER.pack(6, 0x05, 1234) + b"x")
    assert isinstance(invalid, InvalidFrame)
    assert (invalid.request_id, invalid.request_type) == (1234, 0x05)
    response = invalid.response()
    assert (response.request_id, response.request_type, response.code) == (1234, 5, 1)
    assert "too short" in response.description


@pytest.mark.parametrize("pieces", [1, 2, 7, 5000])
def test_oversized_frame_is_skipped_without_buffering(pieces: int) -> None:
    body = b"A" * 200_000
    frame = HEADER.pack(5 + len(body), 0x05, 42) + body
    session = greeted_server_session(1024)
    events: list[object] = []
    for piece in splits(frame + GOOD, [max(1, (len(frame) + 9) // pieces)]):
        session.receive_data(piece)
        events.extend(drain(session))
        assert session.buffered <= len(piece) + 1024, "the oversized body was buffered"
    session.receive_data(b"")
    events.extend(drain(session))
    assert codes(events) == [ErrorCode.FRAME_TOO_LARGE, "GetTime", CLOSED]
    too_large = events[0]
    assert isinstance(too_large, InvalidFrame)
    assert (too_large.request_id, too_large.request_type) == (42, 0x05)
    assert "exceeds the maximum of 1024" in too_large.description


def test_eof_inside_a_frame_is_malformed_then_closed() -> None:
    session = greeted_server_session()
    events = feed_pieces(session, [GOOD, GOOD[:5]], eof=True)
    assert codes(events) == ["GetTime", ErrorCode.MALFORMED_FRAME, CLOSED]
    assert "ended inside a frame" in events[1].description  # type: ignore[union-attr]


def test_eof_inside_a_skipped_frame() -> None:
    session = greeted_server_session(1024)
    events = feed_pieces(session, [HEADER.pack(5000, 0x05, 1) + b"x" * 10], eof=True)
    assert codes(events) == [ErrorCode.FRAME_TOO_LARGE, ErrorCode.MALFORMED_FRAME, CLOSED]


def test_eof_at_a_boundary_is_just_closed() -> None:
    assert codes(feed_pieces(greeted_server_session(), [GOOD], eof=True)) == [
        "GetTime", CLOSED]


# -- encoding refuses what does not fit ---------------------------------------------------


@pytest.mark.parametrize(("message", "text"), [
    (Send(request_id=1, to=2, text="x" * 70000), "at most 65535"),
    (Send(request_id=1, to=-1, text="x"), "out of range"),
    (Send(request_id=2**32, to=1, text="x"), "out of range"),
    (Send(request_id=1, to=1, text="\ud800"), "UTF-8"),
    (ListOk(request_id=1, clients=(ClientEntry(1, "a", 1),) * 70000), "split the list"),
])
def test_encoding_refuses_values_that_do_not_fit(message: Message, text: str) -> None:
    with pytest.raises(ChatUsageError, match=text):
        encode(message)


def test_decoder_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_frame must be between 1024"):
        FrameDecoder(10)


def test_the_protocol_document_shows_what_the_code_sends() -> None:
    """The hex examples of docs/chat-protocol.md are what encode() produces."""
    doc = " ".join((REPO / "docs" / "chat-protocol.md").read_text().split())
    doc = re.sub(r"\s+", " ", doc)
    for message in (Hello(request_id=1), GetTime(request_id=2),
                    Send(request_id=4, to=2, text="hi"), SendOk(request_id=4, to=2),
                    Incoming(sender=3, address="127.0.0.1", port=40000, text="hi")):
        assert encode(message).hex(" ") in doc, type(message).__name__
