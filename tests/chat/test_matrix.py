"""The chat server over every stream transport x backend, driven by muxio's own client
through the transport registry: framing under pipelining, the list, forwarding, leaving."""

from __future__ import annotations

from muxio.handlers.chat import ErrorCode, LeaveReason, Message
from muxio.handlers.chat.messages import ErrorResponse, Incoming, ListOk, SendOk, TimeOk
from tests.chat.harness import chat_rig


def test_100_time_requests_back_to_back_from_20_clients(backend: str, transport: str) -> None:
    with chat_rig(backend, transport) as rig:
        clients = rig.connect(20)
        answers: dict[int, list[Message]] = {client.id: [] for client in clients}
        for client in clients:
            with client.protocol.batch():  # 100 frames in one write: framing must hold
                for _ in range(100):
                    client.protocol.time(answers[client.id].append)
        rig.run_until(lambda: all(len(a) >= 100 for a in answers.values()))
        rig.loop.run_once(0.01)  # anything extra would show up now
        for client in clients:
            got = answers[client.id]
            assert len(got) == 100 and all(isinstance(answer, TimeOk) for answer in got)
            ids = [answer.request_id for answer in got]
            assert ids == sorted(ids) and len(set(ids)) == 100
            assert client.recorder.responses == []
            assert client.protocol.pending == 0


def test_three_clients_list_forward_and_departure(backend: str, transport: str) -> None:
    with chat_rig(backend, transport) as rig:
        a, b, c = rig.connect(3)
        listed = rig.ask(a, a.protocol.list)
        assert isinstance(listed, ListOk)
        seen = {entry.client_id: (entry.address, entry.port) for entry in listed.clients}
        assert list(seen) == [a.id, b.id, c.id]
        for client in (a, b, c):
            host, port = client.transport.get_extra_info("sockname")[:2]
            assert seen[client.id] == (host, port), "the list shows each client's address"

        answer = rig.ask(a, lambda reply: a.protocol.send(b.id, "hello B, from A", reply))
        assert answer == SendOk(request_id=answer.request_id, to=b.id)
        rig.run_until(lambda: bool(b.recorder.messages))
        host, port = a.transport.get_extra_info("sockname")[:2]
        assert b.recorder.messages == [Incoming(sender=a.id, address=host, port=port,
                                                text="hello B, from A")]
        assert a.recorder.messages == [] and c.recorder.messages == []

        c.protocol.bye()
        rig.run_until(lambda: c.closed and len(a.recorder.left) == 1)
        assert a.recorder.left[0].client_id == c.id
        assert a.recorder.left[0].reason == LeaveReason.BYE
        gone = rig.ask(a, lambda reply: a.protocol.send(c.id, "are you there?", reply))
        assert isinstance(gone, ErrorResponse) and gone.code == ErrorCode.CLIENT_GONE
        listed = rig.ask(b, b.protocol.list)
        assert isinstance(listed, ListOk)
        assert [entry.client_id for entry in listed.clients] == [a.id, b.id]
        assert [j.client.client_id for j in a.recorder.joined] == [b.id, c.id]
