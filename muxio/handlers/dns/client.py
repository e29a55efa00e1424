"""DNS client: a sans-I/O exchange core, and a Resolver that drives it over any network.

`Exchange` is the state machine of one query asked of a list of servers. It is fed
events (`start`, `datagram_received`, `stream_received`, `attempt_failed`,
`timer_expired`, each with the current time) and returns actions for its driver
(`ArmTimer`, `SendDatagram`, `SendStream`, `Finished`); it never touches a socket or a
clock, so every path (timeouts, TC, spoofed replies) is testable without a network.

Policy:
- Attempts: `tries` rounds over the servers in order, each attempt waiting `timeout`
  seconds. A reply from any server already asked is accepted (a slow first server may
  still win).
- A reply counts only if it comes from the address (IP and port) of a server we asked,
  parses, and is a response to our query (QR set, same ID, opcode and question: dnspython's
  `is_response`). Anything else is ignored and counted in `ignored`, so spoofed or
  mismatched datagrams cannot end the exchange; the next genuine reply still can.
- TC set on a UDP reply: the same server is asked again over TCP at once (RFC 7766).
- SERVFAIL or REFUSED: the next server is asked; if none is left, that reply is the
  result (the caller reads its rcode). Every other rcode (NXDOMAIN included) is an answer.
- Nothing valid before the last attempt expires: `DnsTimeoutError`.

The `Resolver` turns each query into a `muxio.futures.Future[dns.message.Message]`. It
needs a `Network`: a Scheduler (time, call_soon, call_later) that can also open a UDP
endpoint and a TCP connection. `muxio.transports.network.LoopNetwork` is that over a muxio loop;
an adapter can provide one over asyncio or Twisted. Each query gets its own UDP socket
(a fresh random source port, RFC 5452) and a random ID (dnspython's `make_query`).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol
from typing import TypeAlias

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from muxio.futures import Future
from muxio.handlers.dns.answer import DEFAULT_MAX_UDP_PAYLOAD
from muxio.handlers.dns.errors import (
    DnsError,
    DnsTimeoutError,
    ResolverClosedError,
    ServerAddressError,
)
from muxio.protocols import (
    Address,
    Cancellable,
    DatagramProtocol,
    DatagramProtocolFactory,
    DatagramTransport,
    Protocol,
    ProtocolFactory,
    Scheduler,
    Transport,
)

log = logging.getLogger("muxio.dns.resolver")

DEFAULT_PORT = 53
DEFAULT_TIMEOUT = 2.0
DEFAULT_TRIES = 2
_RETRY_ELSEWHERE = frozenset({dns.rcode.SERVFAIL, dns.rcode.REFUSED})
_PARSE_ERRORS = (dns.exception.DNSException, ValueError, IndexError, UnicodeError)


@dataclass(frozen=True, slots=True)
class NameServer:
    """A server to query: an IP literal and a port."""

    host: str
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ServerAddressError(
                f"DNS server {self.host!r} is not an IP address: give an IPv4 or IPv6 "
                f"literal, e.g. 127.0.0.1 or ::1") from None
        if not 0 < self.port <= 65535:
            raise ServerAddressError(f"DNS server port {self.port} is out of range 1-65535")

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def matches(self, addr: Address) -> bool:
        """Whether a datagram from `addr` comes from this server (IP and port)."""
        try:
            return (int(addr[1]) == self.port
                    and ipaddress.ip_address(addr[0]) == ipaddress.ip_address(self.host))
        except (ValueError, TypeError, IndexError):
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(text: str, default_port: int = DEFAULT_PORT) -> NameServer:
    """'127.0.0.1', '127.0.0.1:5353', '::1', '[::1]:5353' -> NameServer."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ServerAddressError(f"DNS server {text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ServerAddressError(f"DNS server {text!r}: expected ':PORT' after ']'")
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(text, port_text)
    return NameServer(host, port)


def _port(text: str, port_text: str) -> int:
    try:
        return int(port_text)
    except ValueError:
        raise ServerAddressError(f"DNS server {text!r}: port {port_text!r} is not a "
                                 f"number") from None


def _as_server(server: str | NameServer | tuple[str, int]) -> NameServer:
    if isinstance(server, NameServer):
        return server
    if isinstance(server, tuple):
        return NameServer(server[0], int(server[1]))
    return parse_server(server)


# -- the sans-I/O core ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Call `timer_expired` at `deadline` (replacing any earlier timer)."""

    deadline: float


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send `wire` over UDP to `server`."""

    server: NameServer
    wire: bytes


@dataclass(frozen=True, slots=True)
class SendStream:
    """Open a TCP connection to `server` and send `wire` (unframed) over it."""

    server: NameServer
    wire: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """A response, where it came from and how."""

    message: dns.message.Message
    server: NameServer
    transport: str
    """'udp' or 'tcp'."""


@dataclass(frozen=True, slots=True)
class Finished:
    """The exchange is over: `reply`, or `error` if no server answered."""

    reply: Reply | None = None
    error: DnsError | None = None


Action: TypeAlias = ArmTimer | SendDatagram | SendStream | Finished


class Exchange:
    """One query asked of a list of servers (see the module docstring for the policy)."""

    def __init__(self, query: dns.message.Message, servers: Sequence[NameServer], *,
                 timeout: float = DEFAULT_TIMEOUT, tries: int = DEFAULT_TRIES,
                 tcp: bool = False) -> None:
        if not servers:
            raise ValueError("an exchange needs at least one server")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if tries < 1:
            raise ValueError(f"tries must be >= 1, got {tries}")
        self.query = query
        self.wire = query.to_wire()
        self.servers = tuple(servers)
        self.timeout = timeout
        self.tries = tries
        self._plan = [(server, tcp) for _ in range(tries) for server in self.servers]
        self._next = 0
        self.current: tuple[NameServer, bool] | None = None
        """(server, over TCP) of the attempt in progress."""
        self._asked: list[NameServer] = []
        self._gave_up: set[NameServer] = set()
        self._fallback: Reply | None = None
        self._last_error: Exception | None = None
        self.done = False
        self.attempts = 0
        self.ignored = 0
        """Replies ignored: wrong source, unparseable, or not a response to our query."""

    # -- events --------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        return self._next_attempt(now)

    def datagram_received(self, data: bytes, source: Address, now: float) -> list[Action]:
        if self.done:
            return []
        server = next((asked for asked in self._asked if asked.matches(source)), None)
        if server is None:
            return self._ignore(f"datagram from {source}, a server we did not ask")
        message = self._parse(data, source)
        if message is None:
            return []
        if message.flags & dns.flags.TC:
            if self.current == (server, True):
                return []  # a late UDP reply; the TCP attempt to that server is under way
            log.debug("truncated reply from %s: asking again over TCP", server)
            return self._attempt(server, True, now)
        return self._accept(Reply(message, server, "udp"), now)

    def stream_received(self, server: NameServer, data: bytes, now: float) -> list[Action]:
        if self.done or self.current != (server, True):
            return []
        message = self._parse(data, server)
        if message is None:
            return []
        return self._accept(Reply(message, server, "tcp"), now)

    def attempt_failed(self, server: NameServer, tcp: bool, error: Exception,
                       now: float) -> list[Action]:
        """Sending failed, or the TCP connection could not open or closed early."""
        if self.done or self.current != (server, tcp):
            return []
        log.debug("query to %s over %s failed: %s", server, "tcp" if tcp else "udp", error)
        self._last_error = error
        return self._next_attempt(now)

    def timer_expired(self, now: float) -> list[Action]:
        if self.done:
            return []
        if self.current is not None:
            log.debug("no answer from %s within %s s", self.current[0], self.timeout)
        return self._next_attempt(now)

    # -- internals -----------------------------------------------------------------------

    def _ignore(self, why: str) -> list[Action]:
        self.ignored += 1
        log.debug("ignored a reply to query %d: %s", self.query.id, why)
        return []

    def _parse(self, data: bytes, source: object) -> dns.message.Message | None:
        try:
            message = dns.message.from_wire(data)
        except _PARSE_ERRORS as exc:
            self._ignore(f"unparseable reply from {source}: {exc}")
            return None
        if not self.query.is_response(message):
            self._ignore(f"from {source}: not a response to our query (id {message.id})")
            return None
        return message

    def _attempt(self, server: NameServer, tcp: bool, now: float) -> list[Action]:
        self.current = (server, tcp)
        if server not in self._asked:
            self._asked.append(server)
        self.attempts += 1
        send = SendStream(server, self.wire) if tcp else SendDatagram(server, self.wire)
        # The timer first: if sending fails at once, the next attempt's timer replaces it.
        return [ArmTimer(now + self.timeout), send]

    def _next_attempt(self, now: float) -> list[Action]:
        while self._next < len(self._plan):
            server, tcp = self._plan[self._next]
            self._next += 1
            if server not in self._gave_up:
                return self._attempt(server, tcp, now)
        return self._finish_without_answer()

    def _accept(self, reply: Reply, now: float) -> list[Action]:
        if reply.message.rcode() in _RETRY_ELSEWHERE:
            self._gave_up.add(reply.server)
            self._fallback = reply
            if any(server not in self._gave_up for server, _ in self._plan[self._next:]):
                log.debug("%s from %s: asking the next server",
                          dns.rcode.to_text(reply.message.rcode()), reply.server)
                return self._next_attempt(now)
        self.done = True
        self.current = None
        return [Finished(reply=reply)]

    def _finish_without_answer(self) -> list[Action]:
        self.done = True
        self.current = None
        if self._fallback is not None:
            return [Finished(reply=self._fallback)]
        what = (f"{self.query.question[0].name} "
                f"{dns.rdatatype.to_text(self.query.question[0].rdtype)}"
                if self.query.question else f"query {self.query.id}")
        servers = ", ".join(str(server) for server in self.servers)
        detail = f" (last error: {self._last_error})" if self._last_error else ""
        return [Finished(error=DnsTimeoutError(
            f"no answer for {what} from {servers} after {self.tries} "
            f"{'try' if self.tries == 1 else 'tries'} of {self.timeout} s each{detail}; "
            f"is a DNS server listening there?"))]


# -- the driver ----------------------------------------------------------------------------


class Network(Scheduler, TypingProtocol):
    """What the Resolver needs from its host: timers, and opening UDP/TCP endpoints."""

    def open_datagram(self, protocol_factory: DatagramProtocolFactory,
                      family: int) -> tuple[DatagramTransport, DatagramProtocol]:
        """An unconnected UDP endpoint on an ephemeral port of `family`."""
        ...

    def open_stream(self, protocol_factory: ProtocolFactory, host: str, port: int,
                    timeout: float) -> Future[tuple[Transport, Protocol]]:
        """A TCP connection to (host, port)."""
        ...


class _DatagramClient(DatagramProtocol):
    def __init__(self, run: _Run) -> None:
        self._run = run

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._run.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # Deferred: sendto reports synchronously, from inside the run's own send.
        self._run.network.call_soon(self._run.on_datagram_error, exc)


class _StreamClient(Protocol):
    def __init__(self, run: _Run, server: NameServer) -> None:
        self._run = run
        self._server = server
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            end = 2 + ((buffer[0] << 8) | buffer[1])
            if len(buffer) < end:
                break
            message = bytes(buffer[2:end])
            del buffer[:end]
            self._run.on_stream_message(self._server, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._run.on_stream_closed(self._server, exc)


class _Run:
    """One query in flight: its Exchange, sockets, timer and future."""

    def __init__(self, resolver: Resolver, exchange: Exchange, future: Future[Reply]) -> None:
        self.resolver = resolver
        self.network = resolver.network
        self.exchange = exchange
        self.future = future
        self._endpoints: dict[int, DatagramTransport] = {}
        self._streams: list[Transport] = []
        self._timer: Cancellable | None = None
        self.finished = False

    def start(self) -> None:
        self._apply(self.exchange.start(self.network.time()))

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if self.finished:
                return
            if isinstance(action, ArmTimer):
                if self._timer is not None:
                    self._timer.cancel()
                delay = max(0.0, action.deadline - self.network.time())
                self._timer = self.network.call_later(delay, self._on_timer)
            elif isinstance(action, SendDatagram):
                self._send_datagram(action)
            elif isinstance(action, SendStream):
                self._send_stream(action)
            else:
                self._finish(action)

    def _send_datagram(self, action: SendDatagram) -> None:
        family = action.server.family
        try:
            endpoint = self._endpoints.get(family)
            if endpoint is None:
                endpoint, _protocol = self.network.open_datagram(
                    lambda: _DatagramClient(self), family)
                self._endpoints[family] = endpoint
            endpoint.sendto(action.wire, action.server.address)
        except Exception as exc:
            # Local trouble (no fds left, a family the host lacks, a poller refusing the
            # fd): this attempt fails and the next one goes on; the last error is named
            # in the final DnsTimeoutError. Deferred, as any other event.
            self.network.call_soon(self._attempt_failed, action.server, False, exc)

    def _send_stream(self, action: SendStream) -> None:
        server = action.server
        try:
            connecting = self.network.open_stream(lambda: _StreamClient(self, server),
                                                  server.host, server.port,
                                                  self.exchange.timeout)
        except Exception as exc:  # as in _send_datagram: this attempt fails, not the run
            self.network.call_soon(self._attempt_failed, server, True, exc)
            return

        def connected(done: Future[tuple[Transport, Protocol]]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is not None:
                self._attempt_failed(server, True, error if isinstance(error, Exception)
                                     else ConnectionError(str(error)))
                return
            transport, _protocol = done.result()
            if self.finished or self.exchange.current != (server, True):
                transport.abort()  # this attempt is over: nothing to send
                return
            self._streams.append(transport)
            transport.write(len(action.wire).to_bytes(2, "big") + action.wire)

        connecting.add_done_callback(connected)

    def _attempt_failed(self, server: NameServer, tcp: bool, error: Exception) -> None:
        if not self.finished:
            self._apply(self.exchange.attempt_failed(server, tcp, error, self.network.time()))

    def _on_timer(self) -> None:
        self._timer = None
        if not self.finished:
            self._apply(self.exchange.timer_expired(self.network.time()))

    def on_datagram(self, data: bytes, addr: Address) -> None:
        if not self.finished:
            self._apply(self.exchange.datagram_received(data, addr, self.network.time()))

    def on_datagram_error(self, exc: Exception) -> None:
        current = self.exchange.current
        if current is not None and not current[1]:
            self._attempt_failed(current[0], False, exc)

    def on_stream_message(self, server: NameServer, data: bytes) -> None:
        if not self.finished:
            self._apply(self.exchange.stream_received(server, data, self.network.time()))

    def on_stream_closed(self, server: NameServer, exc: Exception | None) -> None:
        if not self.finished:
            self._attempt_failed(server, True, exc or ConnectionResetError(
                f"{server} closed the TCP connection without answering"))

    def _finish(self, finished: Finished) -> None:
        self.cancel()
        if self.future.done():
            return
        if finished.reply is not None:
            self.future.set_result(finished.reply)
        else:
            assert finished.error is not None
            self.future.set_exception(finished.error)

    def cancel(self) -> None:
        """Release the sockets and the timer (the future is left as it is)."""
        if self.finished:
            return
        self.finished = True
        self.resolver._runs.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for endpoint in self._endpoints.values():
            endpoint.abort()
        self._endpoints.clear()
        for stream in self._streams:
            stream.abort()
        self._streams.clear()


class Resolver:
    """Asks DNS servers questions; each answer arrives as a Future (see module docstring).

        resolver = Resolver(LoopNetwork(loop), ["127.0.0.1:5353"])
        message = loop.run_until_complete(resolver.query("example.com", "MX"))
    """

    def __init__(self, network: Network,
                 servers: Sequence[str | NameServer | tuple[str, int]], *,
                 timeout: float = DEFAULT_TIMEOUT, tries: int = DEFAULT_TRIES,
                 payload: int = DEFAULT_MAX_UDP_PAYLOAD) -> None:
        if not servers:
            raise ServerAddressError("a resolver needs at least one server address")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if tries < 1:
            raise ValueError(f"tries must be >= 1, got {tries}")
        self.network = network
        self.servers = [_as_server(server) for server in servers]
        self.timeout = timeout
        self.tries = tries
        self.payload = payload
        self._runs: set[_Run] = set()
        self._closed = False

    def make_query(self, qname: str | dns.name.Name, rdtype: str | int = "A",
                   rdclass: str | int = "IN", *, recursion_desired: bool = True,
                   want_dnssec: bool = False) -> dns.message.QueryMessage:
        """The query message `query` sends (EDNS0 with our payload size, a random ID)."""
        flags = dns.flags.RD if recursion_desired else dns.flags.Flag(0)
        return dns.message.make_query(
            qname, dns.rdatatype.RdataType.make(rdtype),
            dns.rdataclass.RdataClass.make(rdclass), use_edns=0, payload=self.payload,
            want_dnssec=want_dnssec, flags=flags)

    def query(self, qname: str | dns.name.Name, rdtype: str | int = "A",
              rdclass: str | int = "IN", *, tcp: bool = False, recursion_desired: bool = True,
              want_dnssec: bool = False) -> Future[dns.message.Message]:
        """Ask for (qname, rdtype, rdclass); the future gives the response message or
        raises DnsTimeoutError."""
        message = self.make_query(qname, rdtype, rdclass, recursion_desired=recursion_desired,
                                  want_dnssec=want_dnssec)
        return self.send(message, tcp=tcp)

    def send(self, message: dns.message.Message, *,
             tcp: bool = False) -> Future[dns.message.Message]:
        """Send a ready-made query message; the future gives the response message."""
        result: Future[dns.message.Message] = Future(self.network)

        def unwrap(done: Future[Reply]) -> None:
            if result.done():
                return
            if done.cancelled():
                result.cancel()
                return
            error = done.exception()
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(done.result().message)

        inner = self.ask(message, tcp=tcp)
        inner.add_done_callback(unwrap)

        def propagate_cancel(done: Future[dns.message.Message]) -> None:
            if done.cancelled():
                inner.cancel()

        result.add_done_callback(propagate_cancel)
        return result

    def ask(self, message: dns.message.Message, *, tcp: bool = False) -> Future[Reply]:
        """Like `send`, with which server answered and over which transport."""
        if self._closed:
            raise ResolverClosedError("the resolver is closed; create a new one")
        future: Future[Reply] = Future(self.network)
        exchange = Exchange(message, self.servers, timeout=self.timeout, tries=self.tries,
                            tcp=tcp)
        run = _Run(self, exchange, future)
        self._runs.add(run)
        future.add_done_callback(_cancel_run_if_cancelled(run))
        run.start()
        return future

    def pending(self) -> int:
        """Queries in flight."""
        return len(self._runs)

    def close(self) -> None:
        """Fail every pending query with ResolverClosedError and release its sockets."""
        self._closed = True
        for run in list(self._runs):
            run.cancel()
            if not run.future.done():
                run.future.set_exception(ResolverClosedError(
                    "the resolver was closed before an answer arrived"))


def _cancel_run_if_cancelled(run: _Run) -> Callable[[Future[Reply]], None]:
    def callback(future: Future[Reply]) -> None:
        if future.cancelled():
            run.cancel()
    return callback
