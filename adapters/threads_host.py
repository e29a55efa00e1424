"""Host muxio handlers on blocking sockets, one OS thread per connection.

The model most servers start from: `accept()` in a loop, and a thread per client that
blocks in `recv()`. It hosts the same `Protocol` handlers as muxio's loop and asyncio,
unchanged, so `muxio bench models` can put threads beside the event loops.

    server = ThreadServer("127.0.0.1", 0)
    server.start(EchoProtocol)           # or build(server.scheduler) for handlers with timers
    ...
    server.stop()                        # every thread joined, every socket closed

Here: the server (acceptor, bounds, stop) and `run()`. The connection's Transport is in
adapters/threads_transport.py, the timers in adapters/threads_timers.py.

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
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from adapters.threads_timers import ErrorHandler, ThreadHostError, ThreadScheduler
from adapters.threads_transport import RECV_SIZE, ThreadTransport
from muxio.protocols import ProtocolFactory, Scheduler
from muxio.transports.tcp import system_backlog

log = logging.getLogger("adapters.threads")

LockPolicy = Literal["server", "connection"]
LOCK_POLICIES: tuple[LockPolicy, ...] = ("server", "connection")

DEFAULT_STACK_SIZE = 512 * 1024
"""Thread stack `run()` asks for (virtual size; RSS counts only the pages a thread
touches). glibc's default is the `ulimit -s` value, usually 8 MiB."""
DEFAULT_JOIN_TIMEOUT = 30.0

_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ABORTED_ACCEPT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})

FactoryBuilder = Callable[[Scheduler], ProtocolFactory]


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
        transport = ThreadTransport(sock, protocol, lock, self._on_error, self._detach)
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
    "DEFAULT_STACK_SIZE", "LOCK_POLICIES", "RECV_SIZE", "LockPolicy", "ThreadHostError",
    "ThreadScheduler", "ThreadServer", "ThreadTransport", "run",
]
