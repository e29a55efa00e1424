"""Host muxio handlers on blocking sockets, one OS thread per connection.

The model most servers start from: `accept()` in a loop, and a thread per client that
blocks in `recv()`. It hosts the same `Protocol` handlers as muxio's loop and asyncio,
unchanged, so `muxio bench models` can put threads beside the event loops.

    server = ThreadServer("127.0.0.1", 0)
    server.start(EchoProtocol)           # or build(server.scheduler) for handlers with timers
    ...
    server.stop()                        # every thread joined, every socket closed

Theory of operation
-------------------
Threads. One acceptor thread blocks in `accept()`. Each accepted connection gets a reader
thread that blocks in `recv()` and calls the handler. One timer thread runs the handlers'
`call_soon`/`call_later` callbacks (`ThreadScheduler`, the `Scheduler` handlers are given).
A connection whose peer does not keep up gets a second thread for as long as its output
is backed up (see Writes). Nothing else runs: no poller, no event loop.

Callbacks never run concurrently where a handler could see it. Every handler callback
(connection_made, data_received, eof_received, pause/resume_writing, connection_lost, and
timers) runs holding a *callback lock*, and so does every Transport method. With the
default policy, `lock="server"`, it is one re-entrant lock per server: handlers that
share state between connections stay correct with no change. The chat server's client
table is the example: a join, a forward to another client's transport and a departure
each run entirely inside one callback under that lock, exactly as they run inside one
loop iteration on an event loop. With `lock="connection"` each connection has its own
lock (timers run under the lock of the connection whose callback armed them): callbacks
of different connections then really run in parallel (as far as the GIL allows), which is
only correct for handlers whose connections share nothing and never touch each other's
transports (echo, the HTTP hello app). `ThreadServer.lock` is the server-wide lock, for
code outside the handlers that touches their shared state (e.g. `chat.close()`).

Writes. `write()` never blocks its caller (the Transport contract): it tries one
`send(MSG_DONTWAIT)` on the blocking socket. What the kernel does not take is buffered and
a *sender thread* is started for the connection; it blocks in `send()` until the buffer is
empty, then exits. While it runs, later writes append to the buffer, so bytes stay in
order. Water marks drive pause_writing/resume_writing exactly as on the loop (the shared
`FlowControl`), so a handler that honours them (echo stops reading, chat drops a slow
receiver) bounds what a peer that never reads can make the server hold, and never blocks
another connection's thread.

Reads. The reader thread checks, under the lock, whether reading is paused before each
`recv()` and again before delivering what a `recv()` returned: `pause_reading()` called
while the thread is blocked in `recv()` holds the bytes it gets until `resume_reading()`.

Closing. The reader thread owns the socket: it closes it and calls `connection_lost`,
exactly once, after its last callback and after the write side is finished (buffer sent,
or dropped by `abort()`). `close()` wakes a reader blocked in `recv()` with
`shutdown(SHUT_RD)`; `abort()` wakes both threads with `shutdown(SHUT_RDWR)`. A handler
exception is logged (or given to `on_error`) and aborts that connection only.

Bounds. `max_threads` caps the connection threads (a bounded pool): past it the acceptor
stops accepting, and new clients wait in the kernel's listen backlog, connected but not
served, until a connection ends. EMFILE/ENFILE/ENOMEM on accept, or a thread that cannot
be started, pauses accepting for `accept_retry_delay` seconds instead of spinning.
Thread stacks: `run()` sets `threading.stack_size(stack_size)` (default
`DEFAULT_STACK_SIZE`) before any thread starts; `ThreadServer` itself leaves the
process-wide setting alone.
"""

from __future__ import annotations

import errno
import heapq
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from muxio.protocols import Protocol, ProtocolFactory, Scheduler
from muxio.transports.flow import FlowControl, water_marks
from muxio.transports.tcp import system_backlog

log = logging.getLogger("adapters.threads")

LockPolicy = Literal["server", "connection"]
LOCK_POLICIES: tuple[LockPolicy, ...] = ("server", "connection")

RECV_SIZE = 64 * 1024
"""Bytes per recv (as muxio's TCP transport: larger reads churn glibc's mmap threshold)."""
SEND_CHUNK = 256 * 1024
"""Bytes per blocking send of the sender thread: the buffer shrinks (and resume_writing can
come) at least this often while a slow peer drains it."""
DEFAULT_STACK_SIZE = 512 * 1024
"""Thread stack `run()` asks for (virtual size; RSS counts only the pages a thread
touches). glibc's default is the `ulimit -s` value, usually 8 MiB."""
DEFAULT_JOIN_TIMEOUT = 30.0

_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ABORTED_ACCEPT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})
_QUIET_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)

ErrorHandler = Callable[[dict[str, Any]], None]
FactoryBuilder = Callable[[Scheduler], ProtocolFactory]


class ThreadHostError(RuntimeError):
    """The thread host could not stop cleanly (a thread did not finish in time)."""


_current = threading.local()
"""`_current.lock`: the callback lock the running thread holds while in a callback."""


def _current_lock() -> threading.RLock | None:
    lock: threading.RLock | None = getattr(_current, "lock", None)
    return lock


# -- timers ------------------------------------------------------------------------------


class TimerHandle:
    """A pending `call_later`; `cancel()` from any thread (checked under the callback lock
    just before the call, so a cancel from a callback always wins)."""

    __slots__ = ("_scheduler", "args", "callback", "cancelled", "lock", "when")

    def __init__(self, scheduler: ThreadScheduler, when: float,
                 callback: Callable[..., object], args: tuple[object, ...],
                 lock: threading.RLock) -> None:
        self._scheduler = scheduler
        self.when = when
        self.callback = callback
        self.args = args
        self.lock = lock
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._scheduler._cancelled()

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when


class ThreadScheduler:
    """`muxio.protocols.Scheduler` for handlers hosted on threads: one timer thread runs
    every `call_soon`/`call_later` callback, each under the callback lock that was held
    where it was armed (the server lock when armed outside any callback)."""

    def __init__(self, default_lock: threading.RLock, on_error: ErrorHandler) -> None:
        self._default_lock = default_lock
        self._on_error = on_error
        self._heap: list[TimerHandle] = []
        self._cancelled_count = 0
        self._condition = threading.Condition(threading.Lock())
        self._stopping = False
        self._thread: threading.Thread | None = None

    def time(self) -> float:
        return time.monotonic()

    def call_soon(self, callback: Callable[..., object], *args: object) -> TimerHandle:
        return self.call_later(0.0, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object],
                   *args: object) -> TimerHandle:
        lock = _current_lock() or self._default_lock
        handle = TimerHandle(self, time.monotonic() + max(0.0, delay), callback, args, lock)
        with self._condition:
            heapq.heappush(self._heap, handle)
            if self._heap[0] is handle:
                self._condition.notify()
        return handle

    def pending(self) -> int:
        """Timers armed and not cancelled (tests, statistics)."""
        with self._condition:
            return len(self._heap) - self._cancelled_count

    def _cancelled(self) -> None:
        with self._condition:
            self._cancelled_count += 1
            # Lazily deleted; rebuilt when most of a large heap is dead (as asyncio does).
            if len(self._heap) > 100 and self._cancelled_count * 2 > len(self._heap):
                self._heap = [handle for handle in self._heap if not handle.cancelled]
                heapq.heapify(self._heap)
                self._cancelled_count = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="threads-host-timers",
                                        daemon=True)
        self._thread.start()

    def _due(self) -> list[TimerHandle] | None:
        """Wait for the timers that are due (None once stopping)."""
        with self._condition:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                heap = self._heap
                while heap and heap[0].cancelled:
                    heapq.heappop(heap)
                    self._cancelled_count -= 1
                if heap and heap[0].when <= now:
                    due = []
                    while heap and heap[0].when <= now:
                        handle = heapq.heappop(heap)
                        if handle.cancelled:
                            self._cancelled_count -= 1
                        else:
                            due.append(handle)
                    return due
                self._condition.wait(heap[0].when - now if heap else None)

    def _run(self) -> None:
        while (due := self._due()) is not None:
            for handle in due:
                with handle.lock:
                    if handle.cancelled:
                        continue
                    handle.cancelled = True  # fired: a late cancel() is a no-op
                    _current.lock = handle.lock  # what this callback arms runs under it
                    try:
                        handle.callback(*handle.args)
                    except Exception as exc:
                        self._on_error({"message": f"timer callback {handle.callback!r} "
                                                   f"raised", "exception": exc})
                    finally:
                        _current.lock = None

    def close(self, timeout: float) -> None:
        with self._condition:
            self._stopping = True
            self._heap.clear()
            self._cancelled_count = 0
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise ThreadHostError(f"the timer thread did not stop within {timeout} s "
                                      f"(a timer callback is blocking)")


# -- the transport -----------------------------------------------------------------------


class ThreadTransport(FlowControl):
    """The Transport a handler gets for one connection served by its own thread."""

    def __init__(self, server: ThreadServer, sock: socket.socket, protocol: Protocol,
                 lock: threading.RLock) -> None:
        self._server = server
        self._sock = sock
        self._protocol: Protocol = protocol
        self._lock = lock
        self._condition = threading.Condition(lock)
        """Wakes this connection's reader (resume, close, finish); shares the lock."""
        self._high_water, self._low_water = water_marks(None, None)
        self._writing_paused = False
        self._buffer = bytearray()
        self._reading = True
        self._closing = False
        self._forced = False
        self._finished = False
        """Nothing more to send (buffer sent or dropped): the reader may close the socket."""
        self._eof_pending = False
        self._eof_written = False
        self._eof_received = False
        self._lost = False
        self._lost_exc: Exception | None = None
        self._write_after_close = 0
        self._sender: threading.Thread | None = None
        self._sender_running = False
        self._extra: dict[str, Any] = {"socket": sock, "transport": "tcp",
                                       "backend": "threads"}
        try:
            self._extra["peername"] = sock.getpeername()
        except OSError:
            self._extra["peername"] = None
        self._extra["sockname"] = sock.getsockname()

    # -- the reader thread ---------------------------------------------------------------

    def _serve(self) -> None:
        """The connection's thread: connection_made, reads, then the end of the line."""
        _current.lock = self._lock  # timers armed in this thread's callbacks run under it
        try:
            if self._call("connection_made", self._protocol.connection_made, self):
                self._read_loop()
            with self._condition:
                while not self._finished:
                    self._condition.wait()
                sender = self._sender
            if sender is not None:
                sender.join()  # woken by shutdown() if it was blocked in send
            with self._lock:
                self._lost = True
                self._closing = True
                self._sock.close()
                try:
                    self._protocol.connection_lost(self._lost_exc)
                except Exception as exc:
                    self._report(exc, "connection_lost")
        finally:
            if self._sock.fileno() != -1:
                self._sock.close()
            self._server._detach(self)

    def _read_loop(self) -> None:
        sock, lock = self._sock, self._lock
        while True:
            with lock:
                if not self._wait_while_paused():
                    return
            try:
                data = sock.recv(RECV_SIZE)
            except OSError as exc:
                with lock:
                    if not self._closing:
                        self._fatal_error(exc)
                return
            with lock:
                # Paused while we were blocked in recv: hold the bytes until resumed.
                if not self._wait_while_paused():
                    return
                if not data:
                    self._read_eof()
                    return
                if not self._call("data_received", self._protocol.data_received, data):
                    return

    def _wait_while_paused(self) -> bool:
        """(Lock held) wait while reading is paused; False once the connection closes."""
        while not self._reading and not self._closing:
            self._condition.wait()
        return not self._closing

    def _read_eof(self) -> None:
        self._reading = False
        self._eof_received = True
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._report(exc, "eof_received")
            self._force_close(exc)
            return
        if not keep_open or self._eof_written:
            self.close()

    def _call(self, what: str, callback: Callable[..., object], *args: object) -> bool:
        """Run a protocol callback under the callback lock; False if it raised (the
        connection is then aborted with that exception)."""
        with self._lock:
            try:
                callback(*args)
            except Exception as exc:
                self._report(exc, what)
                self._force_close(exc)
                return False
        return True

    def _report(self, exc: Exception, what: str) -> None:
        self._server._on_error({
            "message": f"{type(self._protocol).__name__}.{what} raised; closing connection "
                       f"from {self._extra.get('peername')}",
            "exception": exc, "transport": self, "protocol": self._protocol})

    def pause_reading(self) -> None:
        with self._lock:
            self._reading = False

    def resume_reading(self) -> None:
        with self._lock:
            if not self._reading and not self._closing and not self._eof_received:
                self._reading = True
                self._condition.notify_all()

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            if self._closing or self._eof_pending or self._eof_written:
                self._write_refused()
                return
            if not data:
                return
            if self._buffer:
                self._buffer += data  # the sender thread is draining: keep the order
                self._maybe_pause()
                return
            try:
                sent = self._sock.send(data, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fatal_error(exc)
                return
            if sent < len(data):
                self._buffer += memoryview(data)[sent:]
                if self._start_sender():
                    self._maybe_pause()

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(chunks))

    def _write_refused(self) -> None:
        if self._eof_pending or self._eof_written:
            raise RuntimeError("write() after write_eof(): the write side is shut down")
        self._write_after_close += 1
        if self._write_after_close == 1:
            log.debug("write() on a closing connection %s ignored", self._extra["peername"])

    def _start_sender(self) -> bool:
        if self._sender_running:
            return True
        self._sender_running = True
        self._sender = threading.Thread(target=self._drain, daemon=True,
                                        name=f"threads-host-send-{self._extra['peername']}")
        try:
            self._sender.start()
        except RuntimeError as exc:  # can't start new thread: out of threads or memory
            self._sender_running = False
            self._sender = None
            self._force_close(exc)
            return False
        return True

    def _drain(self) -> None:
        """The sender thread: blocking sends until the buffer is empty."""
        _current.lock = self._lock
        while (chunk := self._next_chunk()) is not None:
            try:
                sent = self._sock.send(chunk)
            except OSError as exc:
                with self._lock:
                    self._sender_running = False
                    if not self._forced:
                        self._fatal_error(exc)
                return
            self._sent(sent)

    def _next_chunk(self) -> bytes | None:
        """What the sender sends next (a copy: writers may append meanwhile); None, and
        the sender done, when the buffer is empty or was dropped by abort()."""
        with self._lock:
            if self._forced or not self._buffer:
                self._sender_running = False
                if self._forced:
                    return None
                if self._closing:
                    self._finish()
                elif self._eof_pending:
                    self._shutdown_write()
                return None
            return bytes(self._buffer[:SEND_CHUNK])

    def _sent(self, sent: int) -> None:
        with self._lock:
            if not self._forced:
                del self._buffer[:sent]
                self._maybe_resume()  # may write more: it appends, the sender still runs

    def write_eof(self) -> None:
        with self._lock:
            if self._eof_pending or self._eof_written or self._closing:
                return
            self._eof_pending = True
            if not self._buffer:
                self._shutdown_write()

    def _shutdown_write(self) -> None:
        self._eof_pending = False
        self._eof_written = True
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc)
            return
        if self._eof_received:
            self.close()  # both directions are finished

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        with self._lock:
            super().set_write_buffer_limits(high, low)

    # -- closing -------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._reading = False
            self._condition.notify_all()
            self._wake_reader(socket.SHUT_RD)
            if not self._buffer:
                self._finish()

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: Exception) -> None:
        if isinstance(exc, _QUIET_ERRORS):
            log.debug("%s: %s", self._extra["peername"], exc)
        else:
            log.warning("connection %s failed: %r", self._extra["peername"], exc)
        self._force_close(exc)

    def _force_close(self, exc: Exception | None) -> None:
        with self._lock:
            if self._forced or self._lost:
                return
            self._forced = True
            self._closing = True
            self._reading = False
            self._lost_exc = exc
            self._buffer.clear()
            self._wake_reader(socket.SHUT_RDWR)
            self._finish()

    def _wake_reader(self, how: int) -> None:
        """shutdown() wakes a thread blocked in recv (and, with SHUT_WR, in send)."""
        if self._sock.fileno() == -1:
            return
        try:
            self._sock.shutdown(how)
        except OSError:
            pass  # not connected any more: the reader is already on its way out

    def _finish(self) -> None:
        self._finished = True
        self._condition.notify_all()

    # -- info ----------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> Protocol:
        return self._protocol

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<ThreadTransport {self._extra.get('peername')} {state}>"


# -- the server --------------------------------------------------------------------------


def _log_error(context: dict[str, Any]) -> None:
    exc = context.get("exception")
    log.error("%s", context.get("message"),
              exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)


class ThreadServer:
    """Accept on a blocking listener; serve each connection in its own thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 lock: LockPolicy = "server", backlog: int | None = None,
                 max_threads: int | None = None, accept_retry_delay: float = 0.1,
                 on_error: ErrorHandler | None = None) -> None:
        if lock not in LOCK_POLICIES:
            raise ValueError(f"lock policy {lock!r} unknown; choose from {LOCK_POLICIES}")
        if max_threads is not None and max_threads < 1:
            raise ValueError(f"max_threads must be >= 1 (or None for no cap), got "
                             f"{max_threads}")
        self._policy: LockPolicy = lock
        self.lock = threading.RLock()
        """The server-wide callback lock: hold it to touch what handlers share."""
        self._on_error = on_error or _log_error
        self.scheduler = ThreadScheduler(self.lock, self._on_error)
        self._max_threads = max_threads
        self._accept_retry_delay = accept_retry_delay
        self._connections: set[ThreadTransport] = set()
        self._threads: set[threading.Thread] = set()
        """Connection threads serving a connection now (what `max_threads` caps)."""
        self._exited: list[threading.Thread] = []
        """Connection threads past their last callback, joined by `stop()` (pruned)."""
        self._state = threading.Condition(threading.Lock())
        """Guards the connection and thread sets; wakes a capped acceptor and `stop()`."""
        self._closed = False
        self._stopped = threading.Event()
        self._factory: ProtocolFactory | None = None
        self._acceptor: threading.Thread | None = None
        self.accept_errors = 0
        self.accepted = 0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server(
            (host, port), family=family, backlog=backlog or system_backlog())

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def connections(self) -> set[ThreadTransport]:
        """The open connections (a copy)."""
        with self._state:
            return set(self._connections)

    def thread_count(self) -> int:
        """Threads this server runs now: acceptor, timers, readers and senders."""
        with self._state:
            readers = len(self._threads)
            senders = sum(1 for transport in self._connections if transport._sender_running)
        acceptor = int(self._acceptor is not None and self._acceptor.is_alive())
        return readers + senders + acceptor + 1

    def start(self, factory: ProtocolFactory) -> ThreadServer:
        """Start accepting; each connection gets `factory()` (build it with
        `self.scheduler` if the handler needs timers)."""
        if self._factory is not None:
            raise RuntimeError("ThreadServer.start() was already called")
        self._factory = factory
        self.scheduler.start()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"threads-host-accept-{self.port}")
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        listener = self._listener
        out_of_resources = False
        while True:
            if not self._wait_for_a_slot():
                return
            try:
                sock, _address = listener.accept()
            except OSError as exc:
                if self._stopped.is_set():
                    return
                if exc.errno in _ABORTED_ACCEPT_ERRNOS:
                    continue
                if exc.errno in _RESOURCE_ERRNOS:
                    self.accept_errors += 1
                    if not out_of_resources:
                        out_of_resources = True
                        log.error("accept failed (%s): pausing accepts for %.2f s with %d "
                                  "connections open. Raise the fd limit (ulimit -n).",
                                  exc.strerror, self._accept_retry_delay,
                                  len(self._connections))
                    self._stopped.wait(self._accept_retry_delay)
                    continue
                raise
            out_of_resources = False
            self.accepted += 1
            if not self._serve_connection(sock):
                self._stopped.wait(self._accept_retry_delay)

    def _wait_for_a_slot(self) -> bool:
        """Wait while `max_threads` connections are served (a full pool leaves new clients
        in the listen backlog); False once the server is closed."""
        with self._state:
            while (self._max_threads is not None and not self._closed
                   and len(self._threads) >= self._max_threads):
                self._state.wait()
            return not self._closed

    def _serve_connection(self, sock: socket.socket) -> bool:
        """Give `sock` a protocol and a thread; False if no thread could be started."""
        assert self._factory is not None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            protocol = self._factory()
        except Exception as exc:
            sock.close()
            self._on_error({"message": "protocol factory failed; connection refused",
                            "exception": exc})
            return True
        lock = self.lock if self._policy == "server" else threading.RLock()
        transport = ThreadTransport(self, sock, protocol, lock)
        thread = threading.Thread(target=transport._serve, daemon=True,
                                  name=f"threads-host-conn-{transport._extra['peername']}")
        with self._state:
            if self._closed:
                sock.close()
                return True
            self._connections.add(transport)
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # can't start new thread
            with self._state:
                self._connections.discard(transport)
                self._threads.discard(thread)
            sock.close()
            self.accept_errors += 1
            log.error("no thread for a new connection (%s) with %d open: connection "
                      "refused, accepts paused for %.2f s", exc, len(self._connections),
                      self._accept_retry_delay)
            return False
        return True

    def _detach(self, transport: ThreadTransport) -> None:
        current = threading.current_thread()
        with self._state:
            self._connections.discard(transport)
            self._threads.discard(current)
            if len(self._exited) >= 64:
                self._exited = [thread for thread in self._exited if thread.is_alive()]
            self._exited.append(current)
            self._state.notify_all()

    def close(self) -> None:
        """Stop accepting; open connections go on (see close_clients/abort_clients)."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._state.notify_all()
        self._stopped.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the acceptor's accept()
        except OSError:
            pass
        if self._acceptor is not None:
            self._acceptor.join(DEFAULT_JOIN_TIMEOUT)
        self._listener.close()

    def close_clients(self) -> None:
        """Close every connection gracefully (buffered data is still sent)."""
        for transport in self.connections:
            transport.close()

    def abort_clients(self) -> None:
        for transport in self.connections:
            transport.abort()

    def stop(self, timeout: float = DEFAULT_JOIN_TIMEOUT) -> None:
        """Stop accepting, abort every connection, and join every thread of the server."""
        self.close()
        self.abort_clients()
        deadline = time.monotonic() + timeout
        with self._state:
            while self._threads:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ThreadHostError(
                        f"{len(self._threads)} connection threads still running "
                        f"{timeout} s after stop(): a handler callback is blocking")
                self._state.wait(left)
            threads, self._exited = self._exited, []
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.scheduler.close(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ThreadServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ThreadServer {self.address} {len(self.connections)} connections>"


def run(build: FactoryBuilder, host: str, port: int,
        ready: Callable[[str], None], *, lock: LockPolicy = "server",
        backlog: int | None = None, max_threads: int | None = None,
        stack_size: int = DEFAULT_STACK_SIZE) -> None:
    """Serve until SIGINT/SIGTERM with a thread per connection (`python -m adapters
    --loop threads`). Sets the process-wide thread stack size first."""
    threading.stack_size(stack_size)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = ThreadServer(host, port, lock=lock, backlog=backlog, max_threads=max_threads)
    server.start(build(server.scheduler))
    host_name, bound_port = server.address
    ready(f"{host_name}:{bound_port}")
    try:
        while not stop.wait(3600):
            pass
    finally:
        server.stop()


__all__ = [
    "DEFAULT_STACK_SIZE", "LOCK_POLICIES", "LockPolicy", "ThreadHostError", "ThreadScheduler",
    "ThreadServer", "ThreadTransport", "TimerHandle", "run",
]
