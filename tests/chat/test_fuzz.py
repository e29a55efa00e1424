"""Hostile input: random bytes, truncated and oversized frames (hypothesis) never make the
core raise, never crash the server, and never disturb the other clients."""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxio.handlers.chat import (
    CLOSED,
    ChatServerConfig,
    ChatSession,
    InvalidFrame,
    Message,
    Role,
    encode,
)
from muxio.handlers.chat.messages import (
    HEADER,
    MESSAGE_TYPES,
    GetList,
    GetName,
    GetTime,
    Hello,
    HelloOk,
    ListOk,
    Ping,
    Send,
    TimeOk,
)
from tests.chat.harness import chat_rig, drain, splits

DERANDOMIZE = os.environ.get("CI", "").lower() == "true"
"""Under CI the randomized tests replay the same examples every run."""
MAX_FRAME = 1024

valid_requests = st.one_of(
    st.builds(Hello, request_id=st.integers(0, 2**32 - 1), version=st.integers(0, 3)),
    st.builds(GetTime, request_id=st.integers(0, 2**32 - 1)),
    st.builds(GetName, request_id=st.integers(0, 2**32 - 1)),
    st.builds(GetList, request_id=st.integers(0, 2**32 - 1)),
    st.builds(Ping, request_id=st.integers(0, 2**32 - 1)),
    st.builds(Send, request_id=st.integers(0, 2**32 - 1), to=st.integers(0, 9),
              text=st.text(max_size=50)),
)


@st.composite
def mangled_frame(draw: st.DrawFn) -> bytes:
    """A frame made wrong in one of the ways a broken or hostile peer gets it wrong."""
    frame = encode(draw(valid_requests))
    how = draw(st.sampled_from(["valid", "truncated", "oversized", "length", "type", "flip",
                                "huge"]))
    if how == "truncated":
        return frame[:draw(st.integers(0, max(0, len(frame) - 1)))]
    if how == "oversized":
        size = draw(st.integers(MAX_FRAME + 1, 4 * MAX_FRAME))
        return HEADER.pack(size, frame[4], 7) + b"z" * draw(st.integers(0, size))
    if how == "length":
        return HEADER.pack(draw(st.integers(0, 64)), frame[4], 7) + frame[9:]
    if how == "type":
        return HEADER.pack(len(frame) - 4, draw(st.integers(0, 255)), 7) + frame[9:]
    if how == "flip":
        data = bytearray(frame)
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "huge":
        return HEADER.pack(2**32 - 1, 5, 7) + frame[9:]
    return frame


hostile = st.one_of(st.binary(max_size=3000),
                    st.lists(mangled_frame(), max_size=12).map(b"".join))


@settings(max_examples=400, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow])
@given(hostile, st.lists(st.integers(1, 200), min_size=1, max_size=8), st.booleans())
def test_core_never_raises_and_stays_bounded(data: bytes, sizes: list[int],
                                             greet_first: bool) -> None:
    session = ChatSession(Role.SERVER, max_frame=MAX_FRAME)
    if greet_first:
        session.receive_data(encode(Hello(request_id=1)))
        assert drain(session) == [Hello(request_id=1)]
    for piece in splits(data, sizes):
        session.receive_data(piece)
        for event in drain(session):
            assert isinstance(event, Message | InvalidFrame) or event is CLOSED
            if isinstance(event, Message):
                assert type(event) in MESSAGE_TYPES.values()
                if isinstance(event, Hello) and session.may_send(HelloOk):
                    session.send(HelloOk(request_id=event.request_id, version=1, client_id=1,
                                         address="a", port=1, max_frame=MAX_FRAME,
                                         heartbeat_ms=0))
        assert session.buffered <= MAX_FRAME + 4 + len(piece)
    session.receive_data(b"")
    events = drain(session)
    assert events and events[-1] is CLOSED


def test_hostile_peers_do_not_disturb_the_server_or_others(backend: str,
                                                           transport: str) -> None:
    """Each example: a new connection sends hostile bytes (then EOF or not); a well-behaved
    client in the same loop gets every answer right, and the server never lets an exception
    escape (chat_rig fails the test if one did)."""
    config = ChatServerConfig(max_frame=MAX_FRAME, max_protocol_errors=20)
    with chat_rig(backend, transport, config) as rig:
        [good] = rig.connect(1)
        rng = random.Random(0)

        @settings(max_examples=25, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(hostile, st.booleans())
        def attack(data: bytes, eof: bool) -> None:
            peer = rig.connect_raw(data, eof_after=eof)
            answers: list[Message] = []
            with good.protocol.batch():
                good.protocol.time(answers.append)
                good.protocol.send(good.id, "to myself", answers.append)
                good.protocol.list(answers.append)
            rig.run_until(lambda: len(answers) == 3)
            assert isinstance(answers[0], TimeOk)
            assert getattr(answers[1], "code", None) == 11  # SEND_TO_SELF: the server is sane
            assert isinstance(answers[2], ListOk)
            assert good.id in rig.chat.clients and good.ready
            # Whatever the hostile peer got back is well-formed chat (errors, answers).
            for event in peer.messages():
                assert not isinstance(event, InvalidFrame), event
            if rng.random() < 0.5 and peer.transport is not None:
                peer.transport.abort()
            rig.run_until(lambda: peer.transport is not None)

        attack()
        for peer in rig.raw:
            if peer.transport is not None and not peer.lost:
                peer.transport.close()
        rig.run_until(lambda: all(peer.lost for peer in rig.raw))
        rig.run_until(lambda: set(rig.chat.clients) <= {good.id} | {
            c.client_id for c in rig.chat.connections})
        assert good.recorder.closed_with == []
