"""The chat client: a Protocol that speaks for a program (the `muxio chat` CLI, tests,
benchmarks) over any stream transport.

    class Show(ChatClientHandler):
        def ready(self, client, hello): client.list(print)
        def indication(self, client, message): print(message)

    client = ChatClientProtocol(loop, Show())
    tcp.connect(lambda: client, "127.0.0.1", 7008, loop=loop)   # or the KCP transport

On `connection_made` the client sends HELLO; `handler.ready` follows HELLO_OK. Requests
(`time`, `name`, `list`, `send`, `ping`, `bye`) return their request id and call their
callback with the response: the matching `...Ok` message or an `ErrorResponse`. A list
that the server split over several LIST_OK frames reaches the callback as one `ListOk`.
Indications (MESSAGE as `Incoming`, `Joined`, `Left`, `Closing`) go to
`handler.indication`.

The client answers the server's PINGs and, once HELLO_OK announced the server's
heartbeat interval, PINGs a silent server itself and gives up after interval x misses
(`ChatTimeoutError`). A refused HELLO ends with `ChatRefusedError`, a broken frame from
the server with `ChatProtocolError`; either way `handler.closed(client, exc)` is last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from muxio.handlers.chat.config import ChatClientConfig
from muxio.handlers.chat.errors import (
    ChatError,
    ChatProtocolError,
    ChatRefusedError,
    ChatTimeoutError,
    ChatUsageError,
)
from muxio.handlers.chat.framing import CLOSED, NEED_DATA
from muxio.handlers.chat.heartbeat import Heartbeat
from muxio.handlers.chat.messages import (
    MESSAGE_OVERHEAD,
    RESPONSES,
    Bye,
    ByeOk,
    ClientEntry,
    Closing,
    ErrorResponse,
    GetList,
    GetName,
    GetTime,
    Hello,
    HelloOk,
    ListOk,
    Message,
    Ping,
    Pong,
    Send,
    type_name,
)
from muxio.handlers.chat.session import ChatSession, InvalidFrame, Role, State
from muxio.protocols import Protocol, Scheduler, Transport

log = logging.getLogger("muxio.chat.client")

Reply = Callable[[Message], object]
"""A request's callback: gets the response (`...Ok`) or an `ErrorResponse`."""


class ChatClientHandler:
    """What a `ChatClientProtocol` tells its program. Override what you need."""

    def ready(self, client: ChatClientProtocol, hello: HelloOk) -> None:
        """HELLO_OK arrived: `client.client_id` is set, requests may be sent."""

    def indication(self, client: ChatClientProtocol, message: Message) -> None:
        """A server-initiated message: `Incoming`, `Joined`, `Left` or `Closing`."""

    def response(self, client: ChatClientProtocol, response: Message) -> None:
        """A response whose request had no callback (or an ERROR the server could not
        attribute to a request, request_id 0)."""

    def writable(self, client: ChatClientProtocol) -> None:
        """The transport's buffer drained after `client.writing_paused` was set."""

    def closed(self, client: ChatClientProtocol, exc: Exception | None) -> None:
        """The connection is over (None: closed cleanly). Pending callbacks never run."""


def _ignore(message: Message) -> None:
    """Callback of the client's own heartbeat PINGs."""


class ChatClientProtocol(Protocol):
    """One connection to a chat server. See the module docstring."""

    def __init__(self, scheduler: Scheduler, handler: ChatClientHandler | None = None,
                 config: ChatClientConfig | None = None) -> None:
        self.scheduler = scheduler
        self.handler = handler or ChatClientHandler()
        self.config = config = config or ChatClientConfig()
        self.session = ChatSession(Role.CLIENT, max_frame=config.max_frame,
                                   peer_max_frame=config.max_frame)
        self.transport: Transport | None = None
        self.hello: HelloOk | None = None
        self.closing: Closing | None = None
        """The server's CLOSING indication, if it sent one."""
        self.error: Exception | None = None
        """Why the client closed the connection itself (refused, timeout, bad frame)."""
        self.closed = False
        self.writing_paused = False
        self.heartbeat: Heartbeat | None = None
        self._pending: dict[int, Reply | None] = {}
        self._lists: dict[int, list[ClientEntry]] = {}
        self._next_id = 0
        self._hello_id = 0
        self._batch: list[bytes] | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.session.state is State.READY and not self.closed

    @property
    def client_id(self) -> int:
        """Our id, from HELLO_OK (0 before)."""
        return self.hello.client_id if self.hello is not None else 0

    @property
    def max_text(self) -> int:
        """Longest SEND text (UTF-8 bytes) the server forwards."""
        max_frame = self.hello.max_frame if self.hello is not None else self.config.max_frame
        return max_frame - MESSAGE_OVERHEAD

    @property
    def pending(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    # -- requests ------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        return self._next_id

    def request(self, message: Message, callback: Reply | None = None) -> int:
        """Send any request (its request_id is assigned if 0); returns the id."""
        if self.closed or self.transport is None:
            raise ChatUsageError("the connection is closed (or not made yet): connect first")
        if message.request_id == 0:
            message = replace(message, request_id=self._new_id())
        frame = self.session.send(message)
        self._pending[message.request_id] = callback
        self._write(frame)
        return message.request_id

    def time(self, callback: Reply | None = None) -> int:
        return self.request(GetTime(request_id=self._new_id()), callback)

    def name(self, callback: Reply | None = None) -> int:
        return self.request(GetName(request_id=self._new_id()), callback)

    def list(self, callback: Reply | None = None) -> int:
        """The whole list reaches `callback` as one ListOk (however many frames)."""
        return self.request(GetList(request_id=self._new_id()), callback)

    def send(self, to: int, text: str, callback: Reply | None = None) -> int:
        """Forward `text` to client `to`; SEND_OK means it was delivered to its connection."""
        return self.request(Send(request_id=self._new_id(), to=to, text=text), callback)

    def ping(self, callback: Reply | None = None) -> int:
        return self.request(Ping(request_id=self._new_id()), callback)

    def bye(self, callback: Reply | None = None) -> int:
        """Say goodbye; the connection closes after BYE_OK."""
        return self.request(Bye(request_id=self._new_id()), callback)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Requests made inside go out in one write (pipelining)."""
        outer = self._batch is not None
        if not outer:
            self._batch = []
        try:
            yield
        finally:
            if not outer:
                frames, self._batch = self._batch or [], None
                if frames and self.transport is not None and not self.transport.is_closing():
                    self.transport.write(b"".join(frames))

    def close(self) -> None:
        """Close without BYE (the server sees EOF)."""
        if self.transport is not None:
            self.transport.close()

    def abort(self, error: Exception | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.transport is not None:
            self.transport.abort()

    def _write(self, frame: bytes) -> None:
        if self._batch is not None:
            self._batch.append(frame)
        elif self.transport is not None:
            self.transport.write(frame)

    # -- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._hello_id = self._new_id()
        frame = self.session.send(Hello(request_id=self._hello_id, version=self.config.version))
        transport.write(frame)

    def data_received(self, data: bytes) -> None:
        session = self.session
        session.receive_data(data)
        while not self.closed:
            event = session.next_event()
            if event is NEED_DATA:
                return
            if event is CLOSED:
                self.close()
                return
            if isinstance(event, InvalidFrame):
                self._invalid(event)
                return
            assert isinstance(event, Message)
            if self.heartbeat is not None:
                # A complete frame proves the server alive; a dripped byte does not.
                self.heartbeat.last_heard = self.scheduler.time()
            self._dispatch(event)

    def eof_received(self) -> bool:
        self.data_received(b"")
        return False

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.handler.writable(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self._pending.clear()
        self._lists.clear()
        self.handler.closed(self, exc if exc is not None else self.error)

    # -- events --------------------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        cls = type(message)
        if cls not in RESPONSES:
            if isinstance(message, Ping):
                self._write(self.session.send(Pong(request_id=message.request_id)))
            elif isinstance(message, Closing):
                self.closing = message
                self.handler.indication(self, message)
            else:
                self.handler.indication(self, message)
            return
        request_id = message.request_id
        if request_id == self._hello_id and self.hello is None:
            self._hello_answered(message)
            return
        if isinstance(message, ListOk):
            if message.more:
                self._lists.setdefault(request_id, []).extend(message.clients)
                return
            parts = self._lists.pop(request_id, None)
            if parts is not None:
                message = replace(message, clients=(*parts, *message.clients))
        if request_id not in self._pending:
            self.handler.response(self, message)
        else:
            callback = self._pending.pop(request_id)
            if callback is None:
                self.handler.response(self, message)
            else:
                callback(message)
        if isinstance(message, ByeOk):
            self.close()

    def _hello_answered(self, message: Message) -> None:
        if isinstance(message, HelloOk):
            self.hello = message
            if message.heartbeat_ms > 0:
                self.heartbeat = Heartbeat(self.scheduler, message.heartbeat_ms / 1000,
                                           self.config.heartbeat_misses, self._send_ping,
                                           self._server_dead)
                self.heartbeat.start()
            self.handler.ready(self, message)
        elif isinstance(message, ErrorResponse):
            self.error = ChatRefusedError(message.code, message.description)
            self.close()
        else:
            self._invalid(InvalidFrame(0, message.request_id, message.TYPE,
                                       f"{type_name(message.TYPE)} in answer to HELLO"))

    def _invalid(self, event: InvalidFrame) -> None:
        error = ChatProtocolError(f"the server sent an invalid frame: {event.description}",
                                  request_id=event.request_id, request_type=event.request_type)
        log.warning("%s; closing the connection", error)
        self.abort(error)

    def _send_ping(self) -> None:
        if self.ready and self.transport is not None and not self.transport.is_closing():
            try:
                self.request(Ping(request_id=self._new_id()), _ignore)
            except ChatError as exc:  # the session closed meanwhile
                log.debug("heartbeat PING not sent: %s", exc)

    def _server_dead(self, silence: float) -> None:
        assert self.heartbeat is not None
        self.abort(ChatTimeoutError(
            f"no frame from the server for {silence:.2f} s ({self.heartbeat.misses} heartbeat "
            f"intervals of {self.heartbeat.interval:g} s): it is gone"))
