"""`ThreadTransport`: the muxio Transport of one connection served by its own thread (see
adapters/threads_host.py for the model: reader thread, sender thread, callback lock).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from adapters.threads_timers import ErrorHandler, set_callback_lock
from muxio.protocols import Protocol
from muxio.transports.flow import FlowControl, water_marks

log = logging.getLogger("adapters.threads")

RECV_SIZE = 64 * 1024
"""Bytes per recv (as muxio's TCP transport: larger reads churn glibc's mmap threshold)."""
SEND_CHUNK = 256 * 1024
"""Bytes per blocking send of the sender thread: the buffer shrinks (and resume_writing can
come) at least this often while a slow peer drains it."""
_QUIET_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)

class ThreadTransport(FlowControl):
    """The Transport a handler gets for one connection served by its own thread."""

    def __init__(self, sock: socket.socket, protocol: Protocol, lock: threading.RLock,
                 on_error: ErrorHandler,
                 on_done: Callable[[ThreadTransport], None]) -> None:
        """`lock`: the callback lock; `on_done(self)` is called last in the reader thread."""
        self._on_error = on_error
        self._on_done = on_done
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
        set_callback_lock(self._lock)  # timers armed in its callbacks run under it
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
            self._on_done(self)

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
        self._on_error({
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
        set_callback_lock(self._lock)
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
