"""The chat server: a client table shared by the connections (`ChatServer`) and the thin
Protocol shell of each connection (`ChatServerProtocol`).

Theory of operation
-------------------
`ChatServer` owns the shared state: the table of greeted clients (id -> connection), the
id counter (ids are never reused, so "gone" and "never existed" can be told apart), the
host name and wall clock. It is an ordinary object handed to each connection, never a
global: two servers in one process do not share clients.

Each connection feeds its `ChatSession` and answers the events one by one. While events
are being handled, every frame for every connection is collected and written once at the
end (or per 16 KiB of a connection's own answers): a burst of pipelined requests costs one
`write`, and so does a burst of SENDs to one recipient. Frames for *other* connections
(forwarded messages, JOINED/LEFT) go through `deliver`, which is where memory is bounded:

- Own requests: when the transport calls `pause_writing` (its buffer passed `high_water`),
  the shell stops taking events from the session and pauses reading; `resume_writing`
  continues. A client that sends without reading stalls only itself.
- Other clients' traffic cannot be paused without letting one slow receiver stall every
  sender, so it is written while the recipient's unsent bytes stay under
  `max_output_buffer`; past that the recipient is dropped (logged as a slow receiver) and
  the sender gets NOT_DELIVERED.

Dead peers: a `Heartbeat` per connection PINGs after each interval of silence and drops
the client after `interval x misses` (its transport is aborted: a peer that sends no FIN
would otherwise hold its entry forever).

Leaving (BYE, EOF, reset, heartbeat timeout, slow receiver, too many invalid frames) removes
the client from the table at once and sends LEFT to the others. Broadcasts run from a queue
so that a drop caused by a broadcast (a slow receiver of LEFT) is announced after it, not
recursively inside it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from muxio.handlers.chat.config import ChatServerConfig
from muxio.handlers.chat.errors import ErrorCode
from muxio.handlers.chat.framing import CLOSED
from muxio.handlers.chat.heartbeat import Heartbeat
from muxio.handlers.chat.messages import (
    LIST_HEAD_SIZE,
    MAX_ADDRESS,
    MESSAGE_OVERHEAD,
    SUPPORTED_VERSIONS,
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
    Incoming,
    Joined,
    LeaveReason,
    Left,
    ListOk,
    Message,
    MessageType,
    NameOk,
    Ping,
    Pong,
    Send,
    SendOk,
    TimeOk,
    encode,
    truncate_utf8,
)
from muxio.handlers.chat.session import ChatSession, InvalidFrame, Role, State
from muxio.protocols import Protocol, Scheduler, Transport

log = logging.getLogger("muxio.chat")

_FLUSH_AT = 16 * 1024
"""Own answers are written once this many bytes are collected (or at the end of a read)."""


def peer_address(peername: Any) -> tuple[str, int]:
    """(address text, port) of a transport's peername: IPv4/IPv6 tuples as they are,
    anything else (a UNIX path, an in-memory name) as text with port 0."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        return truncate_utf8(str(peername[0]), MAX_ADDRESS), int(peername[1]) & 0xFFFF
    return truncate_utf8("" if peername is None else str(peername), MAX_ADDRESS), 0


class ChatServer:
    """The shared state of one chat service: give `protocol_factory` to a transport server.

        chat = ChatServer(loop)                     # any Scheduler
        server = tcp.serve(chat.protocol_factory, "127.0.0.1", 7008, loop=loop)
        ...
        chat.close("shutting down")                 # CLOSING to everyone, then close
    """

    def __init__(self, scheduler: Scheduler, config: ChatServerConfig | None = None, *,
                 hostname: str | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.scheduler = scheduler
        self.config = config or ChatServerConfig()
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.wall_clock = wall_clock
        self._clients: dict[int, ChatServerProtocol] = {}
        self.connections: set[ChatServerProtocol] = set()
        """Every open connection, greeted or not."""
        self._next_id = 1
        self._busy = 0
        """Connections whose events are being handled (nested through resume_writing)."""
        self._pending: list[ChatServerProtocol] = []
        """Connections with frames queued while busy, written when handling ends."""
        self._broadcasts: deque[tuple[bytes, ChatServerProtocol | None]] = deque()
        self._broadcasting = False
        self._closed = False
        self.stats: dict[str, int] = {"forwarded": 0, "not_delivered": 0, "invalid_frames": 0,
                                      "dropped_slow": 0, "dropped_timeout": 0,
                                      "dropped_errors": 0}

    # -- what connections use ------------------------------------------------------------

    def protocol_factory(self) -> ChatServerProtocol:
        """A new connection's protocol (pass the bound method as the factory)."""
        return ChatServerProtocol(self)

    @property
    def clients(self) -> dict[int, ChatServerProtocol]:
        """Greeted clients by id (a copy)."""
        return dict(self._clients)

    def client_ids(self) -> list[int]:
        return list(self._clients)

    @property
    def closed(self) -> bool:
        return self._closed

    def _greet(self, conn: ChatServerProtocol) -> int | None:
        """Give `conn` an id and list it; None if the server is full."""
        if len(self._clients) >= self.config.max_clients:
            return None
        client_id = self._next_id
        self._next_id += 1
        self._clients[client_id] = conn
        return client_id

    def _announce_joined(self, conn: ChatServerProtocol) -> None:
        log.debug("client %d joined from %s port %d", conn.client_id, conn.address, conn.port)
        self._broadcast(encode(Joined(client=conn.entry())), conn)

    def _leave(self, conn: ChatServerProtocol, reason: LeaveReason) -> None:
        """Remove a greeted client from the list and tell the others (once)."""
        if self._clients.get(conn.client_id) is not conn:
            return
        del self._clients[conn.client_id]
        log.debug("client %d (%s port %d) left: %s", conn.client_id, conn.address, conn.port,
                  reason.name.lower().replace("_", " "))
        if not self._closed:
            self._broadcast(encode(Left(client_id=conn.client_id, reason=reason)), None)

    def drop(self, conn: ChatServerProtocol, reason: LeaveReason, detail: str) -> None:
        """Cut a client off now (its transport is aborted) and log why."""
        if conn.dropped:
            return
        conn.dropped = True
        log.warning("dropping client %s (%s port %d): %s", conn.client_id or "(not greeted)",
                    conn.address, conn.port, detail)
        key = {LeaveReason.SLOW_RECEIVER: "dropped_slow", LeaveReason.TIMEOUT: "dropped_timeout",
               LeaveReason.PROTOCOL_ERRORS: "dropped_errors"}.get(reason)
        if key is not None:
            self.stats[key] += 1
        self._leave(conn, reason)
        conn._abort()

    def _flush_pending(self) -> None:
        pending = self._pending
        while pending:
            batch = pending[:]
            pending.clear()
            for conn in batch:
                conn._flush()

    def _broadcast(self, frame: bytes, exclude: ChatServerProtocol | None) -> None:
        self._broadcasts.append((frame, exclude))
        if self._broadcasting:
            return  # the outer call drains the queue: no recursion through drops
        self._broadcasting = True
        try:
            while self._broadcasts:
                frame, exclude = self._broadcasts.popleft()
                for conn in list(self._clients.values()):
                    if conn is not exclude and not conn.dropped:
                        conn.deliver(frame)
        finally:
            self._broadcasting = False

    def _forward(self, sender: ChatServerProtocol, request: Send) -> Message:
        """Deliver a SEND; the response for the sender."""
        to = request.to
        target = self._clients.get(to)
        error: tuple[ErrorCode, str] | None = None
        if to == sender.client_id:
            error = ErrorCode.SEND_TO_SELF, "cannot send to yourself"
        elif target is None:
            if 1 <= to < self._next_id:
                error = ErrorCode.CLIENT_GONE, f"client {to} has left"
            else:
                error = ErrorCode.NO_SUCH_CLIENT, f"there is no client {to}"
        else:
            max_text = self.config.max_frame - MESSAGE_OVERHEAD
            if len(request.text) > max_text // 4 and len(request.text.encode()) > max_text:
                error = ErrorCode.TEXT_TOO_LONG, f"text longer than {max_text} bytes of UTF-8"
            else:
                frame = encode(Incoming(sender=sender.client_id, address=sender.address,
                                        port=sender.port, text=request.text))
                if target.deliver(frame):
                    self.stats["forwarded"] += 1
                    return SendOk(request_id=request.request_id, to=to)
                self.stats["not_delivered"] += 1
                if target.dropped:
                    error = ErrorCode.NOT_DELIVERED, f"client {to} could not take the " \
                                                     f"message and was dropped (slow receiver)"
                else:
                    error = ErrorCode.CLIENT_GONE, f"client {to} is leaving"
        code, description = error
        return ErrorResponse(request_id=request.request_id, code=code,
                             request_type=MessageType.SEND, description=description)

    def list_responses(self, request_id: int) -> Iterator[ListOk]:
        """The client list as LIST_OK frames, each within max_frame (`more` on all but the
        last)."""
        budget = self.config.max_frame - (LIST_HEAD_SIZE - 4)
        entries: list[ClientEntry] = []
        size = 0
        for conn in self._clients.values():
            entry = conn.entry()
            entry_size = 8 + len(entry.address.encode())
            if entries and (size + entry_size > budget or len(entries) == 0xFFFF):
                yield ListOk(request_id=request_id, clients=tuple(entries), more=True)
                entries, size = [], 0
            entries.append(entry)
            size += entry_size
        yield ListOk(request_id=request_id, clients=tuple(entries), more=False)

    def time_response(self, request_id: int) -> TimeOk:
        now = self.wall_clock()
        text = datetime.fromtimestamp(now, timezone.utc).astimezone().isoformat(
            timespec="milliseconds")
        return TimeOk(request_id=request_id, unix_ms=int(now * 1000), text=text)

    # -- lifetime ------------------------------------------------------------------------

    def _attach(self, conn: ChatServerProtocol) -> None:
        self.connections.add(conn)

    def _detach(self, conn: ChatServerProtocol, reason: LeaveReason) -> None:
        self.connections.discard(conn)
        self._leave(conn, reason)

    def close(self, reason: str = "the server is shutting down") -> None:
        """Tell every connection CLOSING (`reason`), then close them (buffered data is
        still sent). New connections are refused the same way."""
        if self._closed:
            return
        self._closed = True
        log.info("closing %d connections: %s", len(self.connections), reason)
        for conn in list(self.connections):
            conn.close(reason)
        self._clients.clear()


class ChatServerProtocol(Protocol):
    """One client connection of a `ChatServer` (made by `ChatServer.protocol_factory`)."""

    __slots__ = (
        "server", "config", "transport", "session", "client_id", "address", "port",
        "heartbeat", "dropped", "_out", "_out_size", "_queued", "_writing_paused",
        "_reading_paused", "_closed", "_errors", "_ping_id", "_handlers")

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.config = config = server.config
        self.transport: Transport | None = None
        self.session = ChatSession(Role.SERVER, max_frame=config.max_frame,
                                   peer_max_frame=config.max_frame)
        self.client_id = 0
        self.address = ""
        self.port = 0
        self.heartbeat = Heartbeat(server.scheduler, config.heartbeat_interval,
                                   config.heartbeat_misses, self._send_ping, self._peer_dead)
        self.dropped = False
        self._out: list[bytes] = []
        self._out_size = 0
        self._queued = False
        self._writing_paused = False
        self._reading_paused = False
        self._closed = False
        self._errors = 0
        self._ping_id = 0
        self._handlers: dict[type[Message], Callable[[Any], None]] = {
            Hello: self._on_hello, GetTime: self._on_time, GetName: self._on_name,
            GetList: self._on_list, Send: self._on_send, Ping: self._on_ping,
            Pong: self._on_pong, Bye: self._on_bye}

    def entry(self) -> ClientEntry:
        return ClientEntry(self.client_id, self.address, self.port)

    @property
    def ready(self) -> bool:
        return self.session.state is State.READY

    # -- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.address, self.port = peer_address(transport.get_extra_info("peername"))
        transport.set_write_buffer_limits(high=self.config.high_water)
        self.server._attach(self)
        if self.server.closed:
            self.close("the server is shutting down")
            return
        self.heartbeat.start()

    def data_received(self, data: bytes) -> None:
        self.heartbeat.last_heard = self.server.scheduler.time()
        self.session.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.session.receive_data(b"")
        self._process()
        # Stay open until the answers to what was already received are out; the CLOSED
        # event (or the drop) closes the transport.
        return True

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.heartbeat.stop()
        self._out.clear()
        self.server._detach(self, LeaveReason.CLOSED)
        self.transport = None

    # -- events --------------------------------------------------------------------------

    def _process(self) -> None:
        """Answer events until the session needs data or our writing is paused."""
        if self._stopped():
            return
        session = self.session
        handlers = self._handlers
        server = self.server
        server._busy += 1
        try:
            while not self._writing_paused:
                event = session.next_event()
                if isinstance(event, Message):
                    self._errors = 0
                    handlers[type(event)](event)
                elif isinstance(event, InvalidFrame):
                    self._on_invalid(event)
                else:
                    if event is CLOSED:
                        self._finish()
                    break  # CLOSED or NEED_DATA
                if self._stopped():
                    return
                if self._out_size >= _FLUSH_AT:
                    self._flush()
        finally:
            server._busy -= 1
            if not server._busy:
                server._flush_pending()
        transport = self.transport
        if transport is None or self._stopped() or transport.is_closing():
            return
        if self._writing_paused:
            if not self._reading_paused:
                self._reading_paused = True
                transport.pause_reading()
        elif self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _stopped(self) -> bool:
        """Closed or dropped: no more events are taken (a method, so that checks after
        calls that may drop us are not narrowed away)."""
        return self._closed or self.dropped

    def _respond(self, message: Message) -> None:
        self._write(self.session.send(message))

    def _write(self, frame: bytes) -> None:
        """Queue a frame. While any connection's events are being handled, frames for
        every connection are collected and written once at the end (a burst of SENDs to
        one recipient costs one send(2)); otherwise they are written at once."""
        self._out.append(frame)
        self._out_size += len(frame)
        if not self._queued:
            self._queued = True
            if self.server._busy:
                self.server._pending.append(self)
            else:
                self._flush()

    def _flush(self) -> None:
        self._queued = False
        if not self._out:
            return
        out = self._out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_size = 0
        if self.transport is not None and not self.dropped:
            self.transport.write(data)

    def deliver(self, frame: bytes) -> bool:
        """Queue a frame from elsewhere (forwarded message, indication). False, and the
        client dropped, if it would pass max_output_buffer."""
        transport = self.transport
        if transport is None or self.dropped or self._closed or transport.is_closing():
            return False
        pending = transport.get_write_buffer_size() + self._out_size
        if pending + len(frame) > self.config.max_output_buffer:
            self.server.drop(self, LeaveReason.SLOW_RECEIVER,
                             f"slow receiver: {pending} bytes not yet sent, the limit is "
                             f"{self.config.max_output_buffer}")
            return False
        self._write(frame)
        return True

    def _on_invalid(self, event: InvalidFrame) -> None:
        self.server.stats["invalid_frames"] += 1
        self._errors += 1
        log.debug("client %s (%s port %d): invalid frame: %s", self.client_id or "-",
                  self.address, self.port, event.description)
        self._respond(event.response())
        if self._errors >= self.config.max_protocol_errors:
            self._flush()
            self.server.drop(self, LeaveReason.PROTOCOL_ERRORS,
                             f"{self._errors} invalid frames in a row (last: "
                             f"{event.description})")

    def _on_hello(self, hello: Hello) -> None:
        if hello.version not in SUPPORTED_VERSIONS:
            versions = ", ".join(map(str, SUPPORTED_VERSIONS))
            self._respond(ErrorResponse(
                request_id=hello.request_id, code=ErrorCode.UNSUPPORTED_VERSION,
                request_type=MessageType.HELLO,
                description=f"version {hello.version} is not supported; this server speaks "
                            f"{versions}"))
            return
        client_id = self.server._greet(self)
        if client_id is None:
            self._respond(ErrorResponse(
                request_id=hello.request_id, code=ErrorCode.SERVER_FULL,
                request_type=MessageType.HELLO,
                description=f"the server has its maximum of {self.config.max_clients} "
                            f"clients; try again later"))
            self._flush()
            self._close_transport()
            return
        self.client_id = client_id
        self._respond(HelloOk(
            request_id=hello.request_id, version=hello.version, client_id=client_id,
            address=self.address, port=self.port, max_frame=self.config.max_frame,
            heartbeat_ms=round(self.config.heartbeat_interval * 1000)))
        self._flush()  # our HELLO_OK goes out before the others hear JOINED
        self.server._announce_joined(self)

    def _on_time(self, request: GetTime) -> None:
        self._respond(self.server.time_response(request.request_id))

    def _on_name(self, request: GetName) -> None:
        self._respond(NameOk(request_id=request.request_id, name=self.server.hostname))

    def _on_list(self, request: GetList) -> None:
        for response in self.server.list_responses(request.request_id):
            self._respond(response)

    def _on_send(self, request: Send) -> None:
        self._respond(self.server._forward(self, request))

    def _on_ping(self, request: Ping) -> None:
        self._respond(Pong(request_id=request.request_id))

    def _on_pong(self, response: Pong) -> None:
        """Heard: that is all a PONG is for (data_received already noted the time)."""

    def _on_bye(self, request: Bye) -> None:
        self._respond(ByeOk(request_id=request.request_id))
        self._flush()
        self.server._leave(self, LeaveReason.BYE)
        self._close_transport()

    def _finish(self) -> None:
        """The session ended (EOF, or BYE handled): off the list now, and close once the
        answers are out."""
        self._flush()
        self.server._leave(self, LeaveReason.CLOSED)
        self._close_transport()

    # -- heartbeats and closing ----------------------------------------------------------

    def _send_ping(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._ping_id = self._ping_id % 0xFFFFFFFF + 1
        if self.session.may_send(Ping):
            self._write(self.session.send(Ping(request_id=self._ping_id)))

    def _peer_dead(self, silence: float) -> None:
        self.server.drop(self, LeaveReason.TIMEOUT,
                         f"no frame for {silence:.2f} s ({self.heartbeat.misses} heartbeat "
                         f"intervals of {self.heartbeat.interval:g} s): dead peer")

    def _close_transport(self) -> None:
        self.heartbeat.stop()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _abort(self) -> None:
        self.heartbeat.stop()
        self._out.clear()
        self._out_size = 0
        if self.transport is not None:
            self.transport.abort()

    def close(self, reason: str) -> None:
        """Send CLOSING with `reason`, then close after the buffered data."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.session.may_send(Closing):
            self._write(self.session.send(Closing(reason=reason)))
            self._flush()
        self._close_transport()

    def __repr__(self) -> str:
        return f"<ChatServerProtocol #{self.client_id} {self.address} port {self.port}>"
