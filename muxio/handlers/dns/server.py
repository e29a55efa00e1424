"""The authoritative server's shells: a DatagramProtocol for UDP, a Protocol for TCP, and
the `DnsServer` they share (zone set, response caches, counters).

Hot path: a response is a pure function of the query's bytes after the 2-byte ID (and of
the zone set), so each encoded response is cached under those bytes, per transport (a
UDP response may be truncated where the TCP one is not). A repeated query costs one dict
lookup and one concatenation that patches the ID back in. That key covers the qname's
spelling (0x20 case), the DO bit and the EDNS payload, so a cached response is always
byte-identical to a freshly built one. On a miss the Responder answers from its compiled
templates (a few microseconds, compiled.py), or with dnspython for what those do not
cover. Answers for names that do not exist are not cached here: a flood of random names
would only push the useful entries out. Each cache holds at most `cache_size` entries
(the oldest goes first); FORMERR and NOTIMP responses are not cached, so random bytes
cannot flush them.

Reload: `install(responder)` swaps the zone set in one assignment and empties the caches;
queries before it are answered from the old zones, queries after from the new, none is
dropped. The service wiring loads the files and builds the responder in a worker thread
on SIGHUP (`responder_for`), then installs it on the loop.

TCP (RFC 7766): 2-byte length framing, any number of queries per connection, answered in
order; a frame too short to hold a DNS header closes the connection; a connection that
starts no message for `tcp_idle_timeout` seconds, or does not finish one within
`tcp_message_timeout` of its first byte, is closed (bytes trickling in do not extend
either); at most `max_tcp_connections` are open, a new one pushing out the least recently
useful; when the client does not read its responses, reading pauses (the transport's
water marks) so memory stays bounded. UDP has none of this state, and is unaffected by
whatever happens on TCP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from muxio.handlers.dns.answer import CACHE, DEFAULT_MAX_UDP_PAYLOAD, ERROR, Responder
from muxio.handlers.dns.zones import ZoneSet
from muxio.protocols import (
    Address,
    Cancellable,
    DatagramProtocol,
    DatagramTransport,
    Protocol,
    Scheduler,
    Transport,
)

log = logging.getLogger("muxio.dns")

DEFAULT_CACHE_SIZE = 10_000
DEFAULT_TCP_IDLE_TIMEOUT = 10.0
DEFAULT_TCP_MESSAGE_TIMEOUT = 5.0
DEFAULT_MAX_TCP_CONNECTIONS = 100
"""Open TCP connections per server (nsd's tcp-count default)."""
_FRAME_HEADER = 2
_DNS_HEADER = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsServerStatistics:
    """Counters since the server started (cache hits are not counted: that path is kept to
    a dict lookup and a send)."""

    built: int
    """Queries that missed the raw-bytes cache and got an answer: `compiled` plus
    `fallback`."""
    compiled: int
    """Answered by the compiled path (compiled.py)."""
    fallback: int
    """Answered by dnspython; why, in `fallbacks`."""
    fallbacks: dict[str, int]
    """Queries the compiled path handed to dnspython, by reason ("wire": the minimal
    parser did not vouch for the message, FORMERR included; "mentioned", "too-big")."""
    templates: int
    """Rendered answer templates held by the compiled path."""
    formerr: int
    """Malformed queries answered with FORMERR or NOTIMP."""
    ignored: int
    """Datagrams or frames dropped without an answer (too short, or a response)."""
    dropped: int
    """UDP responses dropped because the send queue was full."""
    tcp_connections: int
    """TCP connections accepted since the start."""
    tcp_open: int
    """TCP connections open now (at most `max_tcp_connections`)."""
    tcp_evicted: int
    """Connections closed to make room for a new one (the least recently useful first)."""
    tcp_timeouts: int
    """Connections closed for idling, or for not completing a message in time."""
    reloads: int
    cached: int
    """Entries in the caches now (raw query bytes, and dnspython-rendered responses)."""


class DnsServer:
    """What every UDP endpoint and TCP connection of one DNS service shares."""

    def __init__(self, zones: ZoneSet, scheduler: Scheduler, *,
                 max_udp_payload: int = DEFAULT_MAX_UDP_PAYLOAD,
                 cache_size: int = DEFAULT_CACHE_SIZE,
                 tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT,
                 tcp_message_timeout: float = DEFAULT_TCP_MESSAGE_TIMEOUT,
                 max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        if tcp_idle_timeout <= 0:
            raise ValueError(f"tcp_idle_timeout must be > 0 seconds, got {tcp_idle_timeout}")
        if tcp_message_timeout <= 0:
            raise ValueError(f"tcp_message_timeout must be > 0 seconds, got "
                             f"{tcp_message_timeout}")
        if max_tcp_connections < 1:
            raise ValueError(f"max_tcp_connections must be >= 1, got {max_tcp_connections}")
        self._responder = Responder(zones, max_udp_payload, cache_size)
        self.max_udp_payload = max_udp_payload
        self.scheduler = scheduler
        self.cache_size = cache_size
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_message_timeout = tcp_message_timeout
        self.max_tcp_connections = max_tcp_connections
        self._streams: dict[DnsStreamProtocol, None] = {}
        """Open TCP connections, least recently useful first (an ordered set)."""
        self.tcp_evicted = 0
        self.tcp_timeouts = 0
        self.udp_cache: dict[bytes, bytes] = {}
        """Query bytes after the ID -> response bytes after the ID (UDP)."""
        self.tcp_cache: dict[bytes, bytes] = {}
        self.built = 0
        self.formerr = 0
        self.ignored = 0
        self.tcp_connections = 0
        self.reloads = 0
        self.dropped = 0

    @property
    def zones(self) -> ZoneSet:
        return self._responder.zones

    def responder_for(self, zones: ZoneSet) -> Responder:
        """What `install` needs to serve `zones`: the zones indexed for answering. Touches
        no state of the server, so it may run in another thread (a reload loads and
        indexes off the loop, then installs on it)."""
        return Responder(zones, self.max_udp_payload, self.cache_size)

    def install(self, responder: Responder) -> None:
        """Serve from `responder` from now on (one assignment; the caches are emptied in
        place): queries before it are answered from the old zones, after it from the new,
        none is dropped."""
        self._responder = responder
        self.udp_cache.clear()
        self.tcp_cache.clear()
        self.reloads += 1
        log.info("serving zones %s", ", ".join(str(origin) for origin in responder.zones))

    def reload(self, zones: ZoneSet) -> None:
        """Serve `zones` from now on (`install(responder_for(zones))`, on the loop)."""
        self.install(self.responder_for(zones))

    # -- TCP connections: the cap and its eviction order -------------------------------

    def stream_opened(self, stream: DnsStreamProtocol) -> None:
        """A new connection: if that makes one too many, close the least recently useful
        one (idle longest, or stuck longest on an unfinished message), as nsd does when
        tcp-count is reached: a flood of silent or dripping connections cannot lock
        good clients out, it only pushes out its own oldest members."""
        self.tcp_connections += 1
        streams = self._streams
        streams[stream] = None
        if len(streams) > self.max_tcp_connections:
            victim = next(iter(streams))
            del streams[victim]
            self.tcp_evicted += 1
            victim.evict()

    def stream_progressed(self, stream: DnsStreamProtocol) -> None:
        """A message was answered on `stream`: it becomes the most recently useful."""
        streams = self._streams
        if stream in streams:
            del streams[stream]
            streams[stream] = None

    def stream_closed(self, stream: DnsStreamProtocol) -> None:
        self._streams.pop(stream, None)

    def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The response to one query message (None: stay silent)."""
        cache = self.tcp_cache if tcp else self.udp_cache
        key = wire[2:]
        cached = cache.get(key)
        if cached is not None:
            return wire[:2] + cached
        return self.build(wire, key, cache, tcp)

    def build(self, wire: bytes, key: bytes, cache: dict[bytes, bytes],
              tcp: bool) -> bytes | None:
        """`answer` for a query that missed `cache` (`key` is its bytes after the ID)."""
        response, outcome = self._responder.respond(wire, tcp=tcp)
        if response is None:
            self.ignored += 1
            return None
        if outcome == ERROR:
            self.formerr += 1
            return response
        self.built += 1
        if outcome == CACHE and self.cache_size:
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]
            cache[key] = response[2:]
        return response

    def datagram_protocol(self) -> DnsDatagramProtocol:
        """A protocol for one UDP endpoint (a factory for `udp.serve`)."""
        return DnsDatagramProtocol(self)

    def stream_protocol(self) -> DnsStreamProtocol:
        """A protocol for one TCP connection (a factory for `tcp.serve`)."""
        return DnsStreamProtocol(self)

    def statistics(self) -> DnsServerStatistics:
        responder = self._responder
        return DnsServerStatistics(
            built=self.built, compiled=responder.compiled.answered,
            fallback=responder.fallback_answers, fallbacks=dict(responder.compiled.fallbacks),
            templates=responder.compiled.templates, formerr=self.formerr,
            ignored=self.ignored, dropped=self.dropped, tcp_connections=self.tcp_connections,
            tcp_open=len(self._streams), tcp_evicted=self.tcp_evicted,
            tcp_timeouts=self.tcp_timeouts, reloads=self.reloads,
            cached=len(self.udp_cache) + len(self.tcp_cache) + len(responder.rendered))

    def __repr__(self) -> str:
        return f"<DnsServer {self.zones!r}>"


class DnsDatagramProtocol(DatagramProtocol):
    """DNS over UDP: one datagram is one query.

    When the transport's send queue passes its high-water mark (the kernel refuses our
    datagrams), responses are dropped until it drains, and counted in `dropped`: a client
    asks again, and memory stays bounded whatever the query rate.
    """

    __slots__ = ("_server", "_cache", "_cache_get", "_build", "_sendto", "_transport")

    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._cache = server.udp_cache
        self._cache_get = server.udp_cache.get
        self._build = server.build
        self._sendto: Callable[[bytes, Address], None] = self._drop
        self._transport: DatagramTransport | None = None

    def connection_made(self, transport: DatagramTransport) -> None:
        self._transport = transport
        self._sendto = transport.sendto

    def datagram_received(self, data: bytes, addr: Address) -> None:
        # The hot path: a cached response with the query's ID patched in.
        key = data[2:]
        cached = self._cache_get(key)
        if cached is not None:
            self._sendto(data[:2] + cached, addr)
            return
        response = self._build(data, key, self._cache, False)
        if response is not None:
            self._sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        # E.g. ICMP port unreachable for a client that went away: nothing to do.
        log.debug("UDP error: %s", exc)

    def pause_writing(self) -> None:
        self._sendto = self._drop

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._sendto = self._transport.sendto

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._sendto = self._drop

    def _drop(self, data: bytes, addr: Address) -> None:
        """Where responses go while the send queue is full, or with no transport."""
        self._server.dropped += 1


class DnsStreamProtocol(Protocol):
    """DNS over TCP: length-prefixed messages, several per connection, answered in order.

    Deadlines, on one timer per connection re-armed lazily: a connection must start a
    message within `tcp_idle_timeout` of the previous answer (or of connecting), and
    finish each message within `tcp_message_timeout` of its first byte. Bytes that trickle
    in do not move either deadline: only a complete message does, so a client dripping a
    byte at a time holds its connection for one message timeout at most.
    """

    __slots__ = ("_server", "_transport", "_buffer", "_progress", "_message_started",
                 "_timer", "_timer_due")

    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: Transport | None = None
        self._buffer = bytearray()
        self._progress = 0.0
        """When the connection last did something useful: connected, or a complete
        message answered."""
        self._message_started: float | None = None
        """When the first byte of the message in progress arrived (None: between
        messages)."""
        self._timer: Cancellable | None = None
        self._timer_due = 0.0

    def connection_made(self, transport: Transport) -> None:
        self._transport = transport
        now = self._server.scheduler.time()
        self._progress = now
        self._arm_timer(now, self._server.tcp_idle_timeout)
        self._server.stream_opened(self)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        buffer = self._buffer
        buffer += data
        server = self._server
        responses: list[bytes] = []
        completed = False
        while len(buffer) >= _FRAME_HEADER:
            length = (buffer[0] << 8) | buffer[1]
            end = _FRAME_HEADER + length
            if len(buffer) < end:
                break
            message = bytes(buffer[_FRAME_HEADER:end])
            del buffer[:end]
            completed = True
            if length < _DNS_HEADER:
                # Not even a header: no ID to answer to, and the stream cannot be trusted.
                server.ignored += 1
                log.debug("closing TCP connection %s: %d-byte message",
                          transport.get_extra_info("peername"), length)
                if responses:
                    transport.writelines(responses)
                transport.close()
                return
            response = server.answer(message, tcp=True)
            if response is not None:
                responses.append(len(response).to_bytes(2, "big"))
                responses.append(response)
        now = server.scheduler.time()
        if responses:
            transport.write(b"".join(responses))
        if completed:
            self._progress = now
            self._message_started = None
            server.stream_progressed(self)
        if buffer and self._message_started is None:
            # The first bytes of a message: its deadline starts now.
            self._message_started = now
            due = now + server.tcp_message_timeout
            if due < self._timer_due:
                self._cancel_timer()
                self._arm_timer(now, server.tcp_message_timeout)

    def eof_received(self) -> bool:
        return False  # the client is done asking: close once the responses are sent

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._cancel_timer()
        self._server.stream_closed(self)

    def evict(self) -> None:
        """Close at once: the server needs this connection's slot for a new one."""
        if self._transport is not None:
            log.debug("closing TCP connection %s: evicted for a new connection",
                      self._transport.get_extra_info("peername"))
            self._transport.abort()

    def deadline(self) -> float:
        """When this connection will be closed unless it completes a message."""
        if self._message_started is not None:
            return self._message_started + self._server.tcp_message_timeout
        return self._progress + self._server.tcp_idle_timeout

    def _arm_timer(self, now: float, delay: float) -> None:
        self._timer_due = now + delay
        self._timer = self._server.scheduler.call_later(delay, self._check_deadline)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_deadline(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        now = self._server.scheduler.time()
        remaining = self.deadline() - now
        if remaining > 0:
            self._arm_timer(now, remaining)
            return
        self._server.tcp_timeouts += 1
        log.debug("closing TCP connection %s: %s", transport.get_extra_info("peername"),
                  "message not completed in time" if self._message_started is not None
                  else "idle")
        transport.close()
