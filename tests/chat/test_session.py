"""The session state machine: what each role may receive and send in each state."""

from __future__ import annotations

import pytest

from muxio.handlers.chat import (
    CLOSED,
    MESSAGE_TYPES,
    RECEIVES,
    SENDS,
    ChatSession,
    ChatUsageError,
    ErrorCode,
    Event,
    InvalidFrame,
    Message,
    MessageClass,
    Role,
    State,
    encode,
    message_class,
)
from muxio.handlers.chat.messages import (
    Bye,
    ByeOk,
    ClientEntry,
    Closing,
    ErrorResponse,
    GetList,
    GetTime,
    Hello,
    HelloOk,
    Incoming,
    Joined,
    ListOk,
    Ping,
    Pong,
    Send,
    TimeOk,
)
from tests.chat.harness import drain, greeted_server_session

HELLO_OK = HelloOk(request_id=1, version=1, client_id=5, address="127.0.0.1", port=4000,
                   max_frame=4096, heartbeat_ms=500)


def receive(session: ChatSession, *messages: Message) -> list[Event]:
    session.receive_data(b"".join(encode(message) for message in messages))
    return drain(session)


def state_of(session: ChatSession) -> State:
    return session.state


def code_of(event: object) -> int:
    assert isinstance(event, InvalidFrame), event
    return event.code


def test_the_tables_follow_the_type_classes() -> None:
    """Requests only reach servers, indications only clients; PING/PONG both ways."""
    for (role, _state), rules in RECEIVES.items():
        for cls in rules:
            kind = message_class(cls.TYPE)
            if cls in (Ping, Pong):
                continue
            expected = MessageClass.REQUEST if role is Role.SERVER else None
            if expected is not None:
                assert kind is expected, (role, cls)
            else:
                assert kind in (MessageClass.RESPONSE, MessageClass.INDICATION), (role, cls)
    everything = {cls for rules in RECEIVES.values() for cls in rules}
    assert everything == set(MESSAGE_TYPES.values())
    for key, rules in SENDS.items():
        other = Role.CLIENT if key[0] is Role.SERVER else Role.SERVER
        received = {cls for (role, _), r in RECEIVES.items() if role is other for cls in r}
        assert set(rules) <= received, key


def test_server_requires_hello_first_but_answers_ping() -> None:
    session = ChatSession(Role.SERVER)
    events = receive(session, GetTime(request_id=1), Ping(request_id=2))
    assert code_of(events[0]) == ErrorCode.HELLO_REQUIRED
    assert events[1] == Ping(request_id=2)
    assert session.state is State.GREETING


def test_pipelined_requests_after_hello_work_when_answered_in_order() -> None:
    session = ChatSession(Role.SERVER)
    session.receive_data(encode(Hello(request_id=1)) + encode(GetTime(request_id=2)))
    assert session.next_event() == Hello(request_id=1)
    session.send(HELLO_OK)  # the server answers before asking for the next event
    assert session.state is State.READY
    assert session.next_event() == GetTime(request_id=2)


def test_second_hello_is_already_greeted() -> None:
    session = greeted_server_session()
    [event] = receive(session, Hello(request_id=9))
    assert code_of(event) == ErrorCode.ALREADY_GREETED
    assert isinstance(event, InvalidFrame) and event.request_id == 9


@pytest.mark.parametrize("message", [
    Incoming(sender=1, address="a", port=1, text="x"), TimeOk(request_id=1, unix_ms=0, text=""),
    ListOk(request_id=1, clients=()), Closing(reason="x")])
def test_server_refuses_what_only_servers_send(message: Message) -> None:
    [event] = receive(greeted_server_session(), message)
    assert code_of(event) == ErrorCode.UNEXPECTED_TYPE
    assert isinstance(event, InvalidFrame) and "a client does not send" in event.description


def test_bye_ends_the_server_session_and_late_bytes_are_dropped() -> None:
    session = greeted_server_session()
    events = receive(session, Bye(request_id=3), GetTime(request_id=4))
    assert events == [Bye(request_id=3), CLOSED]
    assert session.send(ByeOk(request_id=3))  # still allowed: the answer to BYE
    session.receive_data(encode(GetTime(request_id=5)))
    assert session.next_event() is CLOSED
    with pytest.raises(ChatUsageError, match="cannot send TIME_OK in state closed"):
        session.send(TimeOk(request_id=4, unix_ms=0, text=""))


def test_server_cannot_send_indications_before_hello() -> None:
    session = ChatSession(Role.SERVER)
    with pytest.raises(ChatUsageError, match="cannot send JOINED in state greeting"):
        session.send(Joined(client=ClientEntry(1, "a", 1)))


def test_client_flow_hello_requests_bye() -> None:
    client = ChatSession(Role.CLIENT)
    with pytest.raises(ChatUsageError, match="wait for HELLO_OK"):
        client.send(GetTime(request_id=1))
    client.send(Hello(request_id=1))
    [event] = receive(client, HELLO_OK)
    assert event == HELLO_OK and state_of(client) is State.READY
    assert (client.max_frame, client.peer_max_frame) == (4096, 4096)  # adopted
    client.send(GetList(request_id=2))
    client.send(Bye(request_id=3))
    assert state_of(client) is State.LEAVING
    with pytest.raises(ChatUsageError):
        client.send(GetTime(request_id=4))
    events = receive(client, ListOk(request_id=2, clients=()), Ping(request_id=8),
                     ByeOk(request_id=3))
    assert events == [ListOk(request_id=2, clients=()), Ping(request_id=8), ByeOk(request_id=3),
                      CLOSED]


def test_client_refuses_answers_before_hello_ok_and_requests_from_servers() -> None:
    client = ChatSession(Role.CLIENT)
    client.send(Hello(request_id=1))
    events = receive(client, TimeOk(request_id=1, unix_ms=0, text=""),
                     ErrorResponse(request_id=1, code=4, description="v"),
                     Send(request_id=3, to=1, text="x"))
    assert [code_of(events[0]), events[1], code_of(events[2])] == [
        ErrorCode.HELLO_REQUIRED, ErrorResponse(request_id=1, code=4, description="v"),
        ErrorCode.UNEXPECTED_TYPE]


def test_frames_over_the_peers_maximum_are_refused_before_sending() -> None:
    client = ChatSession(Role.CLIENT)
    client.send(Hello(request_id=1))
    receive(client, HELLO_OK)
    with pytest.raises(ChatUsageError, match="exceeds the peer's maximum of 4096"):
        client.send(Send(request_id=2, to=1, text="x" * 5000))


def test_closing_ends_the_client_session() -> None:
    client = ChatSession(Role.CLIENT)
    client.send(Hello(request_id=1))
    assert receive(client, HELLO_OK, Closing(reason="maintenance"), TimeOk(
        request_id=2, unix_ms=0, text="")) == [HELLO_OK, Closing(reason="maintenance"), CLOSED]
