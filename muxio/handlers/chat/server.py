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

Turns: one connection gets at most `frames_per_turn` frames handled per loop iteration.
When it has pipelined more, its reading is paused and the rest waits (as bytes in its
session) for a `call_soon` in the next iteration, after every other connection's turn and
the loop's timers and signals. So 500 clients pipelining 200 LISTs each delay a timer, a
signal (SIGTERM) or another client by at most `frames_per_turn` frames per connection,
not by 100 000 frames.

Broadcasts (JOINED, LEFT) are appended to a per-iteration *feed* and given to each
listed client once per iteration (the feed's frames after the point where that client
joined), or earlier, right before anything else is written to it, so the order each
client sees is unchanged. A join storm of N clients therefore costs N writes per loop
iteration instead of N x N / 2 Python-level deliveries. LIST answers come from an
encoded list kept until someone joins or leaves.

Liveness: a `Heartbeat` per connection PINGs after each interval of silence and drops the
client after `interval x misses` (its transport is aborted: a peer that sends no FIN would
otherwise hold its entry forever). Only a complete frame counts as hearing from the peer:
a peer dripping one byte of an unfinished frame is silent. A connection that has not
completed HELLO within `hello_timeout` gets CLOSING and is closed, and at most
`max_ungreeted` connections may wait for HELLO at once: past that, the oldest of them are
evicted as soon as they have waited `ungreeted_grace` (a second: a client that sends HELLO
at once is greeted long before, even in a storm of connections that the server accepts
faster than it reads), so a flood of connections that never greet cannot hold every fd.

Leaving (BYE, EOF, reset, heartbeat timeout, slow receiver, too many invalid frames) removes
the client from the table at once and sends LEFT to the others. A client dropped for too
many invalid frames still reads its ERROR frames and a CLOSING saying why: the server
half-closes and drains what the client still sends for `linger_timeout`, so that the
client reads them instead of a reset. Every close the server starts is bounded the same
way: a connection whose last frames are not taken within `linger_timeout` is aborted.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from muxio.handlers.chat.bus import ChatBus
from muxio.handlers.chat.config import ChatServerConfig
from muxio.handlers.chat.errors import ErrorCode
from muxio.handlers.chat.framing import CLOSED
from muxio.handlers.chat.heartbeat import Heartbeat
from muxio.handlers.chat.messages import (
    HEADER_SIZE,
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
from muxio.protocols import Cancellable, Protocol, Scheduler, Transport

log = logging.getLogger("muxio.chat")

_MAX_HELD = 64
"""Answers one connection may have held behind SENDs on the bus; past it, its events wait
(and its reading pauses) until the bus answers."""
_FLUSH_AT = 16 * 1024
"""Own answers are written once this many bytes are collected (or at the end of a read)."""
_REQUEST_ID = struct.Struct(">I")
_ID_AT = HEADER_SIZE - _REQUEST_ID.size
"""Where a frame's request id starts (after the length and the type)."""


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
                 wall_clock: Callable[[], float] = time.time,
                 bus: ChatBus | None = None) -> None:
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
        self._feed: list[bytes] = []
        """This iteration's broadcast frames (JOINED, LEFT), in order."""
        self._feed_ends: list[int] = [0]
        """_feed_ends[i]: bytes of the feed before its frame i."""
        self._feed_bytes = b""
        self._feed_epoch = 0
        """Counts the feeds handed out: a connection's position in an older one is 0."""
        self._feed_flush: Cancellable | None = None
        self._pending_flush: Cancellable | None = None
        """The call_soon that writes what bus answers released (`_flush_soon`)."""
        self._list_cache: list[bytes] | None = None
        """LIST_OK frames of the current list (request id 0), until a join or leave."""
        self._ungreeted: dict[ChatServerProtocol, float] = {}
        """Connections without HELLO_OK yet -> when they connected, oldest first."""
        self._sweep_timer: Cancellable | None = None
        self._sweep_when = 0.0
        self._closed = False
        self.stats: dict[str, int] = {
            "frames": 0, "forwarded": 0, "not_delivered": 0, "invalid_frames": 0,
            "dropped_slow": 0, "dropped_timeout": 0, "dropped_errors": 0,
            "hello_timeouts": 0, "evicted_ungreeted": 0, "bus_refused": 0}
        self.bus = bus
        """The bus that joins this server to others (docs/chat-protocol.md section 10), or
        None: this server's clients are all there is."""
        if bus is not None:
            bus.start(self)

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

    @property
    def ungreeted(self) -> int:
        """Open connections still without HELLO_OK."""
        return len(self._ungreeted)

    def _greet(self, conn: ChatServerProtocol, client_id: int = 0) -> int | None:
        """List `conn` under `client_id` (given by the bus) or a new id of ours; None if
        the server is full."""
        if len(self._clients) >= self.config.max_clients:
            return None
        if not client_id:
            client_id = self._next_id
            self._next_id += 1
        self._clients[client_id] = conn
        self._ungreeted.pop(conn, None)
        self._list_cache = None
        conn.listed = True
        # It hears about what happens from now on, not about this iteration's earlier
        # joins and leaves (LIST tells it who is there).
        conn._feed_epoch = self._feed_epoch
        conn._feed_seen = len(self._feed)
        return client_id

    def _announce_joined(self, conn: ChatServerProtocol) -> None:
        log.debug("client %d joined from %s port %d", conn.client_id, conn.address, conn.port)
        self._broadcast(encode(Joined(client=conn.entry())), conn)

    def _leave(self, conn: ChatServerProtocol, reason: LeaveReason) -> None:
        """Remove a greeted client from the list and tell the others (once)."""
        if self._clients.get(conn.client_id) is not conn:
            return
        del self._clients[conn.client_id]
        conn.listed = False
        self._list_cache = None
        log.debug("client %d (%s port %d) left: %s", conn.client_id, conn.address, conn.port,
                  reason.name.lower().replace("_", " "))
        if self.bus is not None:
            self.bus.unregister(conn.client_id, reason)
        if not self._closed:
            self._broadcast(encode(Left(client_id=conn.client_id, reason=reason)), None)

    def drop(self, conn: ChatServerProtocol, reason: LeaveReason, detail: str, *,
             closing: str | None = None) -> None:
        """Cut a client off now and log why. With `closing`, it first reads what was
        queued for it and a CLOSING with that reason (bounded by linger_timeout);
        otherwise its transport is aborted."""
        if conn.dropped:
            return
        conn.dropped = True
        log.warning("dropping client %s (%s port %d): %s", conn.client_id or "(not greeted)",
                    conn.address, conn.port, detail)
        key = {LeaveReason.SLOW_RECEIVER: "dropped_slow", LeaveReason.TIMEOUT: "dropped_timeout",
               LeaveReason.PROTOCOL_ERRORS: "dropped_errors"}.get(reason)
        if key is not None:
            self.stats[key] += 1
        self._ungreeted.pop(conn, None)
        self._leave(conn, reason)
        if closing is not None:
            conn._linger_out(closing)
        else:
            conn._abort()

    def _flush_soon(self) -> None:
        if self._pending and self._pending_flush is None:
            self._pending_flush = self.scheduler.call_soon(self._flush_pending_now)

    def _flush_pending_now(self) -> None:
        self._pending_flush = None
        if not self._busy:
            self._flush_pending()

    def _flush_pending(self) -> None:
        pending = self._pending
        while pending:
            batch = pending[:]
            pending.clear()
            for conn in batch:
                conn._flush()

    # -- broadcasts: one feed per loop iteration ---------------------------------------------

    def _broadcast(self, frame: bytes, exclude: ChatServerProtocol | None) -> None:
        """Queue `frame` for every listed client but `exclude` (see the module docstring:
        delivered once per iteration, or before anything else written to a client)."""
        self._feed.append(frame)
        self._feed_ends.append(self._feed_ends[-1] + len(frame))
        if exclude is not None:
            exclude._feed_epoch = self._feed_epoch
            exclude._feed_seen = len(self._feed)
        if self._feed_flush is None:
            self._feed_flush = self.scheduler.call_soon(self._flush_feed)

    def _feed_from(self, start: int) -> bytes:
        """The feed's frames from frame `start` on, as one bytes object."""
        if len(self._feed_bytes) != self._feed_ends[-1]:
            self._feed_bytes = b"".join(self._feed)
        if not start:
            return self._feed_bytes
        return self._feed_bytes[self._feed_ends[start]:]

    def _flush_feed(self) -> None:
        """Give every listed client the feed's frames it has not had; start a new feed."""
        self._feed_flush = None
        feed = self._feed
        while True:
            length = len(feed)
            for conn in list(self._clients.values()):
                conn._catch_up()
            if len(feed) == length:  # no drop (slow receiver) added a LEFT meanwhile
                break
        self._feed = []
        self._feed_ends = [0]
        self._feed_bytes = b""
        self._feed_epoch += 1

    # -- greeting deadlines ------------------------------------------------------------------

    def _await_hello(self, conn: ChatServerProtocol) -> None:
        """A new connection: it has hello_timeout to greet; past max_ungreeted, the oldest
        un-greeted ones are evicted once they have waited ungreeted_grace."""
        self._ungreeted[conn] = self.scheduler.time()
        if self._sweep_timer is None or len(self._ungreeted) > self.config.max_ungreeted:
            self._sweep_ungreeted()

    def _sweep_ungreeted(self) -> None:
        """Close the un-greeted connections past their hello deadline, evict the oldest
        while there are too many (and they are old enough), and arm the timer for the next
        time one of these is due. The dict is in connection order: only its front matters."""
        config = self.config
        ungreeted = self._ungreeted
        now = self.scheduler.time()
        while ungreeted:
            conn, since = next(iter(ungreeted.items()))
            if since + config.hello_timeout <= now:
                del ungreeted[conn]
                self.stats["hello_timeouts"] += 1
                log.debug("closing %s port %d: no HELLO within %g s", conn.address,
                          conn.port, config.hello_timeout)
                conn.close(f"no HELLO within {config.hello_timeout:g} s")
            elif len(ungreeted) > config.max_ungreeted and since + config.ungreeted_grace <= now:
                del ungreeted[conn]
                self.stats["evicted_ungreeted"] += 1
                log.debug("evicting %s port %d: more than %d connections wait for HELLO",
                          conn.address, conn.port, config.max_ungreeted)
                # No lingering: the point is to give its fd back now.
                conn.close(f"more than {config.max_ungreeted} connections are waiting for "
                           f"HELLO; this one waited longest", linger=False)
            else:
                break
        if not ungreeted:
            return
        since = next(iter(ungreeted.values()))
        due = since + config.hello_timeout
        if len(ungreeted) > config.max_ungreeted:
            due = min(due, since + config.ungreeted_grace)
        if self._sweep_timer is not None:
            if self._sweep_when <= due:
                return  # fires first; it looks again then
            self._sweep_timer.cancel()
        self._sweep_when = due
        self._sweep_timer = self.scheduler.call_later(max(0.0, due - now), self._sweep_due)

    def _sweep_due(self) -> None:
        self._sweep_timer = None
        self._sweep_ungreeted()

    def _forward(self, sender: ChatServerProtocol, request: Send) -> Message | None:
        """Deliver a SEND; the response for the sender (None: it comes from the bus)."""
        to = request.to
        target = self._clients.get(to)
        error: tuple[ErrorCode, str] | None = None
        if to == sender.client_id:
            error = ErrorCode.SEND_TO_SELF, "cannot send to yourself"
        elif target is None and self.bus is not None:
            return self._forward_on_bus(sender, request)
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

    def _forward_on_bus(self, sender: ChatServerProtocol, request: Send) -> Message | None:
        """A SEND to a client that is not ours: through the bus, the sender's events
        waiting for the answer (so that its answers stay in request order)."""
        assert self.bus is not None
        max_text = self.config.max_frame - MESSAGE_OVERHEAD
        if len(request.text) > max_text // 4 and len(request.text.encode()) > max_text:
            return ErrorResponse(request_id=request.request_id, code=ErrorCode.TEXT_TOO_LONG,
                                 request_type=MessageType.SEND,
                                 description=f"text longer than {max_text} bytes of UTF-8")
        frame = encode(Incoming(sender=sender.client_id, address=sender.address,
                                port=sender.port, text=request.text))
        slot = sender._hold()
        request_id, to = request.request_id, request.to

        def forwarded(code: ErrorCode | None, description: str) -> None:
            if code is None:
                self.stats["forwarded"] += 1
                sender._fill(slot, SendOk(request_id=request_id, to=to))
            else:
                self.stats["not_delivered"] += 1
                sender._fill(slot, ErrorResponse(
                    request_id=request_id, code=code, request_type=MessageType.SEND,
                    description=description))

        self.bus.forward(to, frame, forwarded)
        return None

    def list_responses(self, request_id: int,
                       entries_in: Iterable[ClientEntry] | None = None) -> Iterator[ListOk]:
        """The client list (ours, or `entries_in`) as LIST_OK frames, each within
        max_frame (`more` on all but the last)."""
        budget = self.config.max_frame - (LIST_HEAD_SIZE - 4)
        entries: list[ClientEntry] = []
        size = 0
        if entries_in is None:
            entries_in = [conn.entry() for conn in self._clients.values()]
        for entry in entries_in:
            entry_size = 8 + len(entry.address.encode())
            if entries and (size + entry_size > budget or len(entries) == 0xFFFF):
                yield ListOk(request_id=request_id, clients=tuple(entries), more=True)
                entries, size = [], 0
            entries.append(entry)
            size += entry_size
        yield ListOk(request_id=request_id, clients=tuple(entries), more=False)

    def list_frames(self, request_id: int) -> bytes:
        """The encoded LIST_OK frames for `request_id`: the list is encoded once per
        join or leave, not per request (a LIST flood costs a join of bytes per LIST)."""
        frames = self._list_cache
        if frames is None:
            frames = self._list_cache = [encode(response)
                                         for response in self.list_responses(0)]
        request = _REQUEST_ID.pack(request_id)
        if len(frames) == 1:
            frame = frames[0]
            return b"".join((frame[:_ID_AT], request, frame[HEADER_SIZE:]))
        return b"".join(piece for frame in frames
                        for piece in (frame[:_ID_AT], request, frame[HEADER_SIZE:]))

    def time_response(self, request_id: int) -> TimeOk:
        now = self.wall_clock()
        text = datetime.fromtimestamp(now, timezone.utc).astimezone().isoformat(
            timespec="milliseconds")
        return TimeOk(request_id=request_id, unix_ms=int(now * 1000), text=text)

    # -- what the bus calls (muxio.handlers.chat.bus.BusHost) ----------------------------

    def bus_deliver(self, client_id: int, frame: bytes) -> bool:
        conn = self._clients.get(client_id)
        if conn is None:
            return False
        # Messages from the bus come in bursts (one read of the subscription): their
        # writes are collected and go out once per loop iteration, one per recipient.
        self._busy += 1
        try:
            delivered = conn.deliver(frame)
        finally:
            self._busy -= 1
            if not self._busy:
                self._flush_soon()
        if not delivered:
            self.stats["not_delivered"] += 1
        return delivered

    def bus_joined(self, entry: ClientEntry) -> None:
        if not self._closed:
            self._broadcast(encode(Joined(client=entry)), None)

    def bus_left(self, client_id: int, reason: int) -> None:
        if not self._closed and client_id not in self._clients:
            self._broadcast(encode(Left(client_id=client_id, reason=reason)), None)

    def bus_local_clients(self) -> list[ClientEntry]:
        return [conn.entry() for conn in self._clients.values()]

    def bus_state_changed(self, up: bool, reason: str) -> None:
        if up:
            log.info("the chat bus is up: accepting new clients")
        else:
            log.warning("the chat bus is down (%s): new clients are refused, clients of "
                        "this server still reach each other", reason)

    # -- lifetime ------------------------------------------------------------------------

    def _attach(self, conn: ChatServerProtocol) -> None:
        self.connections.add(conn)
        if not self._closed:
            self._await_hello(conn)

    def _detach(self, conn: ChatServerProtocol, reason: LeaveReason) -> None:
        self.connections.discard(conn)
        self._ungreeted.pop(conn, None)
        self._leave(conn, reason)

    def close(self, reason: str = "the server is shutting down") -> None:
        """Tell every connection CLOSING (`reason`), then close them (buffered data is
        still sent). New connections are refused the same way."""
        if self._closed:
            return
        self._closed = True
        log.info("closing %d connections: %s", len(self.connections), reason)
        for timer in (self._sweep_timer, self._feed_flush, self._pending_flush):
            if timer is not None:
                timer.cancel()
        self._sweep_timer = self._feed_flush = self._pending_flush = None
        self._ungreeted.clear()
        for conn in list(self.connections):
            conn.close(reason)
        self._clients.clear()


class ChatServerProtocol(Protocol):
    """One client connection of a `ChatServer` (made by `ChatServer.protocol_factory`)."""

    __slots__ = (
        "server", "config", "transport", "session", "client_id", "address", "port",
        "heartbeat", "dropped", "listed", "_out", "_out_size", "_queued", "_writing_paused",
        "_reading_paused", "_closed", "_errors", "_ping_id", "_handlers", "_continuation",
        "_lingering", "_linger_timer", "_feed_epoch", "_feed_seen", "_waiting", "_asking",
        "_held", "_after_held")

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
        self.listed = False
        """In the client list: it receives JOINED/LEFT (the server sets it)."""
        self._out: list[bytes] = []
        self._out_size = 0
        self._queued = False
        self._writing_paused = False
        self._reading_paused = False
        self._closed = False
        self._errors = 0
        self._ping_id = 0
        self._continuation: Cancellable | None = None  # the rest of a turn, call_soon
        self._lingering = False  # half-closed after a drop: the client's bytes are dropped
        self._linger_timer: Cancellable | None = None
        self._feed_epoch = -1  # which broadcast feed _feed_seen counts frames of
        self._feed_seen = 0
        # With a bus (section 10 of docs/chat-protocol.md): answers keep request order.
        self._waiting = False
        """Events wait: for the bus's answer to HELLO or LIST, for held answers to go out
        before BYE or EOF, or because too many are held."""
        self._asking = False
        """A HELLO or LIST is on the bus (one at a time: events wait for it)."""
        self._held: deque[list[bytes]] = deque()
        """Answers in request order behind a SEND on the bus: [] until the bus answers,
        then [frame]. SENDs to other servers are pipelined, their answers kept in order."""
        self._after_held: Callable[[], None] | None = None
        """BYE or EOF handling, run once the held answers are out."""
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
        # Bytes alone do not prove the peer alive: a complete frame does (see _process).
        if self._lingering:
            return  # dropped: what it still sends is read and discarded
        self.session.receive_data(data)
        if self._continuation is None:  # else the scheduled turn takes it
            self._process()

    def eof_received(self) -> bool:
        if self._lingering:
            return False  # it read our last frames and closed: done
        self.session.receive_data(b"")
        if self._continuation is None:
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
        self._held.clear()
        self._after_held = None
        for timer in (self._continuation, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._continuation = self._linger_timer = None
        self._out.clear()
        self.server._detach(self, LeaveReason.CLOSED)
        self.transport = None

    # -- events --------------------------------------------------------------------------

    def _process(self) -> None:
        """Answer events until the session needs data, our writing is paused, or this
        turn's `frames_per_turn` are used up (the rest continues from call_soon)."""
        if self._stopped():
            return
        session = self.session
        handlers = self._handlers
        server = self.server
        budget = self.config.frames_per_turn
        handled = 0
        server._busy += 1
        try:
            while not (self._writing_paused or self._waiting):
                if handled == budget:
                    if self._continuation is None:
                        self._continuation = server.scheduler.call_soon(self._next_turn)
                    break
                event = session.next_event()
                if isinstance(event, Message):
                    handled += 1
                    self._errors = 0
                    handlers[type(event)](event)
                elif isinstance(event, InvalidFrame):
                    handled += 1
                    self._on_invalid(event)
                else:
                    if event is CLOSED:
                        self._finish()
                    break  # CLOSED or NEED_DATA
                if self._stopped():
                    break
                if self._out_size >= _FLUSH_AT:
                    self._flush()
        finally:
            if handled:
                server.stats["frames"] += handled
                # A complete frame (valid or not) is what proves the peer alive.
                self.heartbeat.last_heard = server.scheduler.time()
            server._busy -= 1
            if not server._busy:
                server._flush_pending()
        self._update_reading()

    def _next_turn(self) -> None:
        self._continuation = None
        self._process()

    def _update_reading(self) -> None:
        """Read while neither our answers are backed up nor a turn is pending."""
        transport = self.transport
        if transport is None or self._stopped() or transport.is_closing():
            return
        paused = (self._writing_paused or self._waiting
                  or self._continuation is not None)
        if paused is not self._reading_paused:
            self._reading_paused = paused
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _stopped(self) -> bool:
        """Closed, dropped or closing with CLOSING sent: no more events are taken and
        nothing more is written (a method, so that checks after calls that may drop us are
        not narrowed away)."""
        return self._closed or self.dropped or self._lingering

    def _respond(self, message: Message) -> None:
        self._answer(self.session.send(message))

    def _answer(self, frame: bytes) -> None:
        """An answer: written now, or behind the answers held for the bus."""
        if self._held:
            self._held.append([frame])
            self._update_waiting()
        else:
            self._write(frame)

    def _hold(self) -> list[bytes]:
        """A place in the answer order for a request the bus answers (`_fill`)."""
        slot: list[bytes] = []
        self._held.append(slot)
        self._update_waiting()
        return slot

    def _fill(self, slot: list[bytes], response: Message) -> None:
        if self._stopped() or self.transport is None:
            return
        # Encoded as it is: the answer was owed when its request was taken, even if BYE
        # or EOF has moved the session on since (SEND_OK and ERROR change no state).
        slot.append(encode(response))
        self._after_bus()

    def _update_waiting(self) -> None:
        self._waiting = (self._asking or len(self._held) >= _MAX_HELD
                         or self._after_held is not None)

    def _after_bus(self) -> None:
        """The bus answered: the answers now complete go out (one write), what waited for
        them runs, and events go on."""
        held = self._held
        server = self.server
        server._busy += 1
        try:
            while held and held[0]:
                self._write(held.popleft()[0])
            if not held and not self._asking and self._after_held is not None:
                after, self._after_held = self._after_held, None
                after()
            was_waiting = self._waiting
            self._update_waiting()
            if was_waiting and not self._waiting:  # else no event waited for this
                self._process()
        finally:
            server._busy -= 1
            if not server._busy:
                # The bus answers in bursts (one read of Redis's replies may answer
                # hundreds of SENDs): what they release goes out once per loop iteration.
                server._flush_soon()

    def _write(self, frame: bytes) -> None:
        """Queue a frame. While any connection's events are being handled, frames for
        every connection are collected and written once at the end (a burst of SENDs to
        one recipient costs one send(2)); otherwise they are written at once. Broadcast
        frames this client has not had yet go first, so it sees everything in order."""
        if self.listed and self.server._feed:
            self._catch_up()
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
        if self.transport is not None and not self._stopped():
            self.transport.write(data)

    def _catch_up(self) -> None:
        """Deliver the broadcast feed's frames from where this client stands in it."""
        server = self.server
        seen = self._feed_seen if self._feed_epoch == server._feed_epoch else 0
        if seen < len(server._feed) and self.listed:
            self._feed_epoch = server._feed_epoch
            self._feed_seen = len(server._feed)
            self.deliver(server._feed_from(seen))

    def deliver(self, frame: bytes) -> bool:
        """Queue a frame from elsewhere (forwarded message, indication). False, and the
        client dropped, if it would pass max_output_buffer."""
        transport = self.transport
        if transport is None or self._stopped() or transport.is_closing():
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
            self.server.drop(self, LeaveReason.PROTOCOL_ERRORS,
                             f"{self._errors} invalid frames in a row (last: "
                             f"{event.description})",
                             closing=f"{self._errors} invalid frames in a row")

    def _on_hello(self, hello: Hello) -> None:
        if hello.version not in SUPPORTED_VERSIONS:
            versions = ", ".join(map(str, SUPPORTED_VERSIONS))
            self._respond(ErrorResponse(
                request_id=hello.request_id, code=ErrorCode.UNSUPPORTED_VERSION,
                request_type=MessageType.HELLO,
                description=f"version {hello.version} is not supported; this server speaks "
                            f"{versions}"))
            return
        bus = self.server.bus
        if bus is not None:
            self._hello_on_bus(hello, bus)
            return
        self._greeted(hello, self.server._greet(self))

    def _hello_on_bus(self, hello: Hello, bus: ChatBus) -> None:
        """The id comes from the bus: refused at once while the bus is down; otherwise
        this connection's events wait for it."""
        if len(self.server._clients) >= self.config.max_clients:
            self._greeted(hello, None)
            return
        if not bus.up:
            self._refuse_hello(hello, f"cannot register new clients now: "
                                      f"{_unreachable(bus)}")
            return
        self._asking = self._waiting = True

        def registered(client_id: int | None, why: str) -> None:
            self._asking = False
            if self._stopped() or self.transport is None or self.transport.is_closing():
                if client_id is not None:  # gone meanwhile: nobody to list
                    bus.unregister(client_id, LeaveReason.CLOSED)
                return
            if client_id is None:
                self._refuse_hello(hello, f"cannot register new clients now: {why}")
            else:
                self._greeted(hello, self.server._greet(self, client_id))
                if not self.listed:
                    bus.unregister(client_id, LeaveReason.CLOSED)
            self._after_bus()

        bus.register(self.address, self.port, registered)

    def _refuse_hello(self, hello: Hello, description: str) -> None:
        """SERVER_FULL (the code a version-1 client knows for "not now, come back") with
        the reason, then close."""
        self.server.stats["bus_refused"] += 1
        # Debug: while the bus is down every login is refused; its going down is the
        # warning (bus_state_changed), and the stats count the refusals.
        log.debug("refusing a login from %s port %d: %s", self.address, self.port,
                  description)
        self._respond(ErrorResponse(request_id=hello.request_id, code=ErrorCode.SERVER_FULL,
                                    request_type=MessageType.HELLO,
                                    description=truncate_utf8(description, 1000)))
        self._flush()
        self._close_transport()

    def _greeted(self, hello: Hello, client_id: int | None) -> None:
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
        if not self.session.may_send(ListOk):  # always, once greeted (LIST needs HELLO)
            return
        bus = self.server.bus
        if bus is None:
            self._write(self.server.list_frames(request.request_id))
            return
        self._asking = self._waiting = True
        request_id = request.request_id

        def listed(entries: Sequence[ClientEntry] | None, why: str) -> None:
            self._asking = False
            if self._stopped() or self.transport is None:
                return
            if entries is None:  # the bus is down: our own clients are what we know
                log.debug("LIST from this server only: %s", why)
                self._answer(self.server.list_frames(request_id))
            else:
                self._answer(b"".join(encode(response) for response in
                                      self.server.list_responses(request_id, entries)))
            self._after_bus()

        bus.list(listed)

    def _on_send(self, request: Send) -> None:
        response = self.server._forward(self, request)
        if response is not None:
            self._respond(response)


    def _on_ping(self, request: Ping) -> None:
        self._respond(Pong(request_id=request.request_id))

    def _on_pong(self, response: Pong) -> None:
        """Heard: that is all a PONG is for (data_received already noted the time)."""

    def _on_bye(self, request: Bye) -> None:
        if self._held:  # BYE_OK comes after the answers to what was sent before
            self._after_held = lambda: self._on_bye(request)
            self._update_waiting()
            return
        self._respond(ByeOk(request_id=request.request_id))
        self._flush()
        self.server._leave(self, LeaveReason.BYE)
        self._close_transport()

    def _finish(self) -> None:
        """The session ended (EOF, or BYE handled): off the list now, and close once the
        answers are out."""
        if self._held:
            self._after_held = self._finish
            self._update_waiting()
            return
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
        """Close after what is buffered; abort if it is not taken within linger_timeout
        (a client that never reads must not hold the connection)."""
        self.heartbeat.stop()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            self._arm_linger()

    def _arm_linger(self) -> None:
        if self.transport is not None and self._linger_timer is None:
            self._linger_timer = self.server.scheduler.call_later(
                self.config.linger_timeout, self._linger_expired)

    def _linger_expired(self) -> None:
        self._linger_timer = None
        if self.transport is not None:
            log.debug("%r: its last frames were not taken within %g s; aborting", self,
                      self.config.linger_timeout)
            self._abort()

    def _linger_out(self, reason: str) -> None:
        """Dropped, but the client reads why: what is queued for it and CLOSING go out,
        then our side is shut and whatever it still sends is read and dropped until it
        closes or linger_timeout passes (closing with unread input would reset the
        connection and could destroy the frames before the client reads them)."""
        self.heartbeat.stop()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.session.may_send(Closing):
            self._out.append(self.session.send(Closing(reason=reason)))
        out, self._out = self._out, []
        self._out_size = 0
        self._lingering = True
        if out:
            transport.write(b"".join(out))
        if transport.can_write_eof():
            transport.write_eof()
            if self._reading_paused:
                self._reading_paused = False
                transport.resume_reading()
        else:
            transport.close()
        self._arm_linger()

    def _abort(self) -> None:
        self.heartbeat.stop()
        self._out.clear()
        self._out_size = 0
        if self.transport is not None:
            self.transport.abort()

    def close(self, reason: str, *, linger: bool = True) -> None:
        """Send CLOSING with `reason`, then close after the buffered data. With `linger`
        (and a transport that can half-close), our side is shut first and what the client
        still sends is drained, so that it reads CLOSING rather than a reset (see
        `_linger_out`)."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._lingering:
            return
        self.server._ungreeted.pop(self, None)
        if linger and transport.can_write_eof():
            self._linger_out(reason)
            return
        if self.session.may_send(Closing):
            self._write(self.session.send(Closing(reason=reason)))
            self._flush()
        self._close_transport()

    def __repr__(self) -> str:
        return f"<ChatServerProtocol #{self.client_id} {self.address} port {self.port}>"


def _unreachable(bus: ChatBus) -> str:
    return f"the chat directory ({bus.description}) is unreachable; try again shortly"
