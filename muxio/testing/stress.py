"""The cross-backend differential stress test: many connections at once, one reference model.

Theory of operation
-------------------
A seed makes a `Scenario`: N conversations over one stream transport, each a client
writing chunks of random sizes at random moments to an echo-like server, which pauses
and resumes reading on its own random schedule and arms and cancels timers from its
callbacks; each conversation ends in one of four ways (`Ending`). Beside them, two
actors load the loop's shared machinery: a timer storm (hundreds of timers, most
cancelled from inside an I/O callback, which rebuilds the heap mid-iteration) and an
fd churn (a watched socket closed behind the loop's back, its number given to a new
socket at once, which must then be watched).

Everything random is decided when the scenario is made, by the seed, as positions in
byte streams and delays, never by the order callbacks happen to run in. The *outcome*
of each conversation is then fixed by the script whatever the backend, so a `Model`
predicts it: the bytes each side receives (all, or a prefix of a known minimum length
for the abort endings), whether each side sees EOF, and the exception class its
`connection_lost` gets. `run_scenario` plays the scenario on one backend and transport and
returns every difference from the model; the same scenario on every registered backend
and transport must return none. Interleavings differ from backend to backend (and run
to run): that is the point.

muxio's test suite runs a bounded number of seeds per backend x transport in CI
(tests/core/test_stress.py); `benchmarks/stress_soak.py` runs seeds for as long as it is
told.
"""

from __future__ import annotations

import enum
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from muxio.loop import Loop, TimerHandle
from muxio.protocols import Protocol, Transport


class Ending(enum.Enum):
    """How a conversation ends, and what each side must then observe."""

    HALF_CLOSE = "half-close"
    """The client writes EOF after its last chunk; the server echoes all, then closes."""
    CLOSE_AFTER_ECHO = "close-after-echo"
    """The client closes once everything came back; the server sees EOF and closes."""
    CLIENT_ABORT = "client-abort"
    """The client aborts once it got `abort_after` echoed bytes: the server is reset."""
    SERVER_ABORT = "server-abort"
    """The server aborts once it got `abort_after` bytes: the client is reset."""


@dataclass(frozen=True)
class ConversationScript:
    index: int
    start_delay: float
    chunk_sizes: tuple[int, ...]
    chunk_gaps: tuple[float, ...]
    """Delay before each chunk (0 = in the same callback as the previous one)."""
    ending: Ending
    abort_after: int
    server_pauses: tuple[tuple[int, float], ...]
    """(after this many bytes received, pause reading for this many seconds)."""
    server_timers: tuple[tuple[int, float, bool], ...]
    """(after this many bytes received, arm a timer of this delay, cancel it later?)."""

    @property
    def total(self) -> int:
        return sum(self.chunk_sizes)


@dataclass(frozen=True)
class Scenario:
    seed: int
    conversations: tuple[ConversationScript, ...]
    storm_timers: int
    churn_rounds: int

    @property
    def payload_bytes(self) -> int:
        return sum(script.total for script in self.conversations)


def make_scenario(seed: int, *, conversations: int = 24, max_bytes: int = 200_000,
                  storm_timers: int = 300, churn_rounds: int = 20) -> Scenario:
    """The scenario a seed stands for (the same on every machine and backend). No
    conversation carries more than `max_bytes` each way."""
    rng = random.Random(seed)
    budgets = [size for size in (1, 100, 5_000, 50_000) if size < max_bytes] + [max_bytes]
    chunk_sizes = [size for size in (1, 7, 512, 1400, 16_384, 65_536, 100_000)
                   if size <= max_bytes]
    scripts = []
    for index in range(conversations):
        total_budget = rng.choice(budgets)
        sizes: list[int] = []
        while sum(sizes) < total_budget:
            sizes.append(min(rng.choice(chunk_sizes), max_bytes - sum(sizes)))
        gaps = tuple(rng.choice((0.0, 0.0, 0.001, 0.005)) for _ in sizes)
        total = sum(sizes)
        ending = rng.choice(list(Ending))
        abort_after = rng.randint(0, total) if ending in (
            Ending.CLIENT_ABORT, Ending.SERVER_ABORT) else 0
        pauses = tuple(sorted((rng.randint(0, total), rng.choice((0.0, 0.002, 0.02)))
                              for _ in range(rng.randint(0, 3))))
        timers = tuple(sorted((rng.randint(0, total), rng.choice((0.0, 0.001, 0.01, 0.05)),
                               rng.random() < 0.5)
                              for _ in range(rng.randint(0, 4))))
        scripts.append(ConversationScript(
            index=index, start_delay=rng.choice((0.0, 0.001, 0.01, 0.03)),
            chunk_sizes=tuple(sizes), chunk_gaps=gaps, ending=ending,
            abort_after=abort_after, server_pauses=pauses, server_timers=timers))
    return Scenario(seed, tuple(scripts), storm_timers, churn_rounds)


def payload_for(seed: int, script: ConversationScript) -> bytes:
    """The client's bytes: pseudo-random, so a reordering or a lost chunk shows."""
    return random.Random(seed * 1_000_003 + script.index).randbytes(script.total)


# -- what each side records -----------------------------------------------------------------


@dataclass
class Observed:
    """One side's story: bytes in order, EOF, connection_lost's exception class."""

    made: int = 0
    received: bytearray = field(default_factory=bytearray)
    eof: int = 0
    lost: list[str] = field(default_factory=list)
    order_errors: list[str] = field(default_factory=list)

    def data(self, data: bytes) -> None:
        if self.lost:
            self.order_errors.append("data_received after connection_lost")
        if self.eof:
            self.order_errors.append("data_received after eof_received")
        self.received += data

    def got_eof(self) -> None:
        if self.lost:
            self.order_errors.append("eof_received after connection_lost")
        self.eof += 1

    def got_lost(self, exc: Exception | None) -> None:
        self.lost.append("None" if exc is None else type(exc).__name__)


class StressClient(Protocol):
    def __init__(self, loop: Loop, script: ConversationScript, payload: bytes) -> None:
        self.loop = loop
        self.script = script
        self.payload = payload
        self.seen = Observed()
        self.transport: Transport | None = None
        self.sent = 0
        self.chunk = 0
        self.done = False

    def connection_made(self, transport: Transport) -> None:
        self.seen.made += 1
        self.transport = transport
        self.loop.call_soon(self._send_next)

    def _send_next(self) -> None:
        transport = self.transport
        assert transport is not None
        sizes, gaps = self.script.chunk_sizes, self.script.chunk_gaps
        while self.chunk < len(sizes) and not transport.is_closing():
            size = sizes[self.chunk]
            transport.write(self.payload[self.sent:self.sent + size])
            self.sent += size
            self.chunk += 1
            if self.chunk < len(sizes) and gaps[self.chunk] > 0:
                self.loop.call_later(gaps[self.chunk], self._send_next)
                return
        if (self.chunk == len(sizes) and self.script.ending is Ending.HALF_CLOSE
                and not transport.is_closing()):
            transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.seen.data(data)
        transport = self.transport
        assert transport is not None
        got = len(self.seen.received)
        ending = self.script.ending
        if ending is Ending.CLIENT_ABORT and got >= self.script.abort_after:
            transport.abort()
        elif ending is Ending.CLOSE_AFTER_ECHO and got >= self.script.total:
            transport.close()

    def eof_received(self) -> bool:
        self.seen.got_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.seen.got_lost(exc)
        self.done = True


class StressServer(Protocol):
    """Echoes; pauses reading on its script and when its writes back up; arms timers."""

    def __init__(self, loop: Loop, scripts: dict[int, ConversationScript],
                 timer_log: list[tuple[float, str]]) -> None:
        self.loop = loop
        self.scripts = scripts
        self.timer_log = timer_log
        self.script: ConversationScript | None = None
        self.seen = Observed()
        self.transport: Transport | None = None
        self.header = bytearray()
        self.paused_by_script = False
        self.paused_by_flow = False
        self.next_pause = 0
        self.next_timer = 0
        self.armed: list[tuple[TimerHandle, str]] = []
        self.fired: list[str] = []
        self.cancelled: list[str] = []
        self.done = False

    def connection_made(self, transport: Transport) -> None:
        self.seen.made += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.script is None:
            # The first 4 bytes say which conversation this is (see HeaderedClient).
            self.header += data
            if len(self.header) < 4:
                return
            index = int.from_bytes(self.header[:4], "big")
            self.script = self.scripts[index]
            data = bytes(self.header[4:])
            self.header.clear()
            if not data:
                return
        self.seen.data(data)
        script = self.script
        transport.write(data)
        got = len(self.seen.received)
        while self.next_timer < len(script.server_timers) and (
                script.server_timers[self.next_timer][0] <= got):
            _, delay, cancel = script.server_timers[self.next_timer]
            name = f"{script.index}.{self.next_timer}"
            self.next_timer += 1
            when = self.loop.time() + delay
            handle = self.loop.call_at(when, self._timer_fired, name, when)
            if cancel:
                self.loop.call_soon(self._cancel, handle, name)
            else:
                self.armed.append((handle, name))
        if script.ending is Ending.SERVER_ABORT and got >= script.abort_after:
            transport.abort()
            return
        while self.next_pause < len(script.server_pauses) and (
                script.server_pauses[self.next_pause][0] <= got):
            _, delay = script.server_pauses[self.next_pause]
            self.next_pause += 1
            if not self.paused_by_script:
                self.paused_by_script = True
                transport.pause_reading()
                self.loop.call_later(delay, self._unpause)

    def _timer_fired(self, name: str, when: float) -> None:
        self.fired.append(name)
        self.timer_log.append((when, name))

    @property
    def timers_settled(self) -> bool:
        """Every timer armed and not cancelled has fired."""
        return all(name in self.fired for _handle, name in self.armed)

    def _cancel(self, handle: TimerHandle, name: str) -> None:
        if name not in self.fired:
            handle.cancel()
            self.cancelled.append(name)

    def _unpause(self) -> None:
        self.paused_by_script = False
        transport = self.transport
        if transport is not None and not self.paused_by_flow and not transport.is_closing():
            transport.resume_reading()

    def pause_writing(self) -> None:
        self.paused_by_flow = True
        transport = self.transport
        if transport is not None:
            transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_by_flow = False
        transport = self.transport
        if transport is not None and not self.paused_by_script and not transport.is_closing():
            transport.resume_reading()

    def eof_received(self) -> bool:
        self.seen.got_eof()
        return False  # close once the echo is sent

    def connection_lost(self, exc: Exception | None) -> None:
        self.seen.got_lost(exc)
        self.done = True


class HeaderedClient(StressClient):
    """Writes its conversation number before the payload, so the server knows it."""

    def connection_made(self, transport: Transport) -> None:
        transport.write(self.script.index.to_bytes(4, "big"))
        super().connection_made(transport)


# -- the actors beside the conversations ---------------------------------------------------


class TimerStorm:
    """Arms `count` far timers and one due soon; an I/O callback cancels all the far ones
    at once (the heap is rebuilt mid-iteration); the due one must fire exactly once."""

    def __init__(self, loop: Loop, count: int) -> None:
        self.loop = loop
        self.fired = 0
        self.far_fired = 0
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.far = [loop.call_later(3600.0, self._far) for _ in range(count)]
        # Readable at the first poll, whose dispatch purges the heap; the due timer is
        # popped right after that dispatch, in the same iteration.
        self.writer.send(b"!")
        loop.add_reader(self.reader, self._cancel_all)
        loop.call_later(0.0, self._due)
        self.done = False

    def _far(self) -> None:
        self.far_fired += 1

    def _due(self) -> None:
        self.fired += 1
        self.loop.call_later(0.02, self._finish)

    def _cancel_all(self) -> None:
        self.reader.recv(16)
        for timer in self.far:
            timer.cancel()

    def _finish(self) -> None:
        self.done = True

    def close(self) -> None:
        self.loop.remove_reader(self.reader)
        self.reader.close()
        self.writer.close()

    def problems(self) -> list[str]:
        found = []
        if self.fired != 1:
            found.append(f"timer storm: the due timer fired {self.fired} times, not once")
        if self.far_fired:
            found.append(f"timer storm: {self.far_fired} cancelled timers fired")
        return found


class FdChurn:
    """Closes a watched socket behind the loop's back, gives its number to a new socket
    in the same callback, and watches that one: its reader must run, on every backend."""

    def __init__(self, loop: Loop, rounds: int) -> None:
        self.loop = loop
        self.rounds = rounds
        self.round = 0
        self.heard = 0
        self.stale_calls = 0
        self.reused = 0
        self.pair: tuple[socket.socket, socket.socket] | None = None
        self.done = False
        loop.call_soon(self._next)

    def _next(self) -> None:
        old = self.pair
        number = -1
        if old is not None:
            number = old[0].fileno()
            old[0].close()  # behind the loop's back: no remove_reader
            old[1].close()
        if self.round == self.rounds:
            if old is not None:
                self.loop.remove_reader(number)  # a closed fd: must not raise
            self.done = True
            return
        self.round += 1
        reader, writer = socket.socketpair()
        if old is not None and writer.fileno() == number:
            reader, writer = writer, reader
        self.reused += reader.fileno() == number
        reader.setblocking(False)
        self.pair = (reader, writer)
        expected = f"round {self.round}".encode()
        self.loop.add_reader(reader, self._readable, reader, expected)
        writer.send(expected)

    def _readable(self, reader: socket.socket, expected: bytes) -> None:
        if self.pair is None or reader is not self.pair[0]:
            self.stale_calls += 1
            return
        data = reader.recv(64)
        if data == expected:
            self.heard += 1
            self.loop.call_soon(self._next)

    def close(self) -> None:
        if self.pair is not None and self.pair[0].fileno() != -1:
            self.loop.remove_reader(self.pair[0])
            self.pair[0].close()
            self.pair[1].close()

    def problems(self) -> list[str]:
        found = []
        if self.heard != self.rounds:
            found.append(f"fd churn: heard {self.heard} of {self.rounds} new sockets "
                         f"({self.reused} had a reused number)")
        if self.stale_calls:
            found.append(f"fd churn: a closed socket's reader ran {self.stale_calls} times")
        return found


# -- the model -------------------------------------------------------------------------------


def expected_problems(script: ConversationScript, payload: bytes, client: Observed,
                      server: Observed) -> list[str]:
    """Differences between what the two sides observed and what the script implies."""
    label = f"conversation {script.index} ({script.ending.value}, {script.total} bytes)"
    found = [f"{label}: {side}: {error}" for side, seen in (("client", client),
                                                              ("server", server))
             for error in seen.order_errors]
    for side, seen in (("client", client), ("server", server)):
        if seen.made != 1:
            found.append(f"{label}: {side}: connection_made {seen.made} times")
        if len(seen.lost) != 1:
            found.append(f"{label}: {side}: connection_lost {len(seen.lost)} times")
    if found:
        return found
    server_got, client_got = bytes(server.received), bytes(client.received)
    if not payload.startswith(server_got):
        found.append(f"{label}: the server's bytes are not a prefix of what was sent "
                     f"(first difference at {_first_difference(payload, server_got)})")
    if not server_got.startswith(client_got):
        found.append(f"{label}: the echo is not a prefix of what the server received "
                     f"(first difference at {_first_difference(server_got, client_got)})")
    ending = script.ending
    want: dict[str, Any]
    if ending is Ending.HALF_CLOSE:
        want = {"server bytes": len(payload), "client bytes": len(payload),
                "server eof": 1, "client eof": 1, "server lost": "None", "client lost": "None"}
    elif ending is Ending.CLOSE_AFTER_ECHO:
        want = {"server bytes": len(payload), "client bytes": len(payload),
                "server eof": 1, "client eof": 0, "server lost": "None", "client lost": "None"}
    elif ending is Ending.CLIENT_ABORT:
        want = {"server eof": 0, "client eof": 0, "client lost": "None",
                "server lost": "ConnectionResetError"}
        if len(client_got) < script.abort_after:
            found.append(f"{label}: the client aborted before getting {script.abort_after}")
    else:
        want = {"server eof": 0, "client eof": 0, "server lost": "None",
                "client lost": "ConnectionResetError"}
        if len(server_got) < script.abort_after:
            found.append(f"{label}: the server aborted before getting {script.abort_after}")
    seen_values: dict[str, Any] = {
        "server bytes": len(server_got), "client bytes": len(client_got),
        "server eof": server.eof, "client eof": client.eof,
        "server lost": server.lost[0], "client lost": client.lost[0]}
    for key, value in want.items():
        if seen_values[key] != value:
            found.append(f"{label}: {key} is {seen_values[key]!r}, the model says {value!r}")
    return found


def _first_difference(left: bytes, right: bytes) -> int:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return index
    return min(len(left), len(right))


class _Complaints(logging.Handler):
    """Collects what muxio logs at WARNING or above during a scenario."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name} {record.levelname}: {record.getMessage()}")


# -- running ---------------------------------------------------------------------------------


@dataclass
class StressResult:
    scenario: Scenario
    backend: str
    transport: str
    problems: list[str]
    timers_fired: int
    timers_cancelled: int


def run_scenario(scenario: Scenario, *, loop: Loop, serve: Callable[..., Any],
                 connect: Callable[..., Any], transport_name: str,
                 timeout: float = 60.0) -> StressResult:
    """Play `scenario` over one stream transport (its `serve` and `connect`, as in
    `muxio.transports.registry`) on `loop`; return every difference from the model."""
    scripts = {script.index: script for script in scenario.conversations}
    payloads = {index: payload_for(scenario.seed, script) for index, script in scripts.items()}
    timer_log: list[tuple[float, str]] = []
    servers: list[StressServer] = []
    clients: list[StressClient] = []
    connect_errors: list[str] = []

    def server_factory() -> StressServer:
        servers.append(StressServer(loop, scripts, timer_log))
        return servers[-1]

    server = serve(server_factory, "127.0.0.1", 0, loop=loop)
    storm = TimerStorm(loop, scenario.storm_timers)
    churn = FdChurn(loop, scenario.churn_rounds)

    def start(script: ConversationScript) -> None:
        client = HeaderedClient(loop, script, payloads[script.index])
        clients.append(client)
        future = connect(lambda: client, "127.0.0.1", server.port, loop=loop)

        def connected(done: Any) -> None:
            if done.exception() is not None:
                connect_errors.append(f"conversation {script.index}: connect failed: "
                                      f"{done.exception()!r}")
                client.done = True

        future.add_done_callback(connected)

    for script in scenario.conversations:
        loop.call_later(script.start_delay, start, script)

    def finished() -> bool:
        return (len(clients) == len(scripts) and all(client.done for client in clients)
                and len(servers) >= len(scripts) - len(connect_errors)
                and all(side.done and side.timers_settled for side in servers)
                and storm.done and churn.done)

    problems: list[str] = []
    complaints = _Complaints()
    muxio_log = logging.getLogger("muxio")
    muxio_log.addHandler(complaints)
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(
        lambda _loop, context: complaints.records.append(
            f"exception handler: {context.get('message')}: {context.get('exception')!r}"))
    try:
        loop.run_until(finished, timeout=timeout)
    except Exception as exc:  # LoopTimeoutError: describe who is stuck
        stuck = [f"conversation {client.script.index} ({client.script.ending.value}): "
                 f"client sent {client.sent}/{client.script.total}, got "
                 f"{len(client.seen.received)}, lost={client.seen.lost}"
                 for client in clients if not client.done]
        stuck += [f"server of conversation "
                  f"{side.script.index if side.script else '?'}: got "
                  f"{len(side.seen.received)}, eof={side.seen.eof}, lost={side.seen.lost}"
                  for side in servers if not side.done]
        problems.append(f"did not finish: {exc}; stuck: {stuck[:10]}")
    finally:
        server.close()
        server.abort_clients()
        storm.close()
        churn.close()
        for _ in range(3):
            loop.run_once(0)
        muxio_log.removeHandler(complaints)
        loop.set_exception_handler(previous_handler)

    # Nothing in a scenario is an error: a warning or an exception reported by muxio is one.
    problems += [f"muxio reported: {record}" for record in complaints.records[:10]]
    problems += connect_errors + storm.problems() + churn.problems()
    by_index = {side.script.index: side for side in servers if side.script is not None}
    for client in clients:
        server_side = by_index.get(client.script.index)
        if server_side is None:
            if not client.seen.lost or client.seen.received:
                problems.append(f"conversation {client.script.index}: the server never "
                                f"learnt which conversation it served")
            continue
        problems += expected_problems(client.script, payloads[client.script.index],
                                      client.seen, server_side.seen)
    problems += _timer_problems(servers, timer_log)
    fired = sum(len(side.fired) for side in servers)
    cancelled = sum(len(side.cancelled) for side in servers)
    return StressResult(scenario, loop.backend, transport_name, problems, fired, cancelled)


def _timer_problems(servers: list[StressServer],
                    timer_log: list[tuple[float, str]]) -> list[str]:
    found = []
    for side in servers:
        cancelled = set(side.cancelled)
        if len(set(side.fired)) != len(side.fired):
            found.append(f"a timer fired twice: {side.fired}")
        if cancelled & set(side.fired):
            found.append(f"cancelled timers fired: {sorted(cancelled & set(side.fired))}")
        if not side.timers_settled:
            found.append(f"timers armed and never fired: "
                         f"{[name for _h, name in side.armed if name not in side.fired]}")
    # A timer armed later can only be due later than one already popped, so firing
    # order is deadline order on every backend.
    deadlines = [when for when, _name in timer_log]
    if deadlines != sorted(deadlines):
        found.append(f"timers fired out of deadline order: {timer_log}")
    return found
