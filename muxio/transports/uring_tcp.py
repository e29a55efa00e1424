"""TCP in io_uring's completion mode: the kernel receives, sends and accepts for us.

Theory of operation
-------------------
On the `uring` backend, a connection does not wait for readiness and then call recv and
send. It asks once for a multishot RECV into the loop's provided-buffer ring: each
arrival comes back as a CQE that already holds the bytes. Writes of one loop iteration
are joined and handed over as one SEND request (MSG_WAITALL: the kernel finishes a
stream send itself); a listener asks once for a multishot ACCEPT. None of these is a
system call of its own: the poller submits every SQE of the iteration with the wait
(one io_uring_enter), and the CQEs come back through it (uring_port.py).

The Transport API, flow control and lifecycle are TcpTransport's:
- Reads: `data_received` per CQE, bytes copied out of the buffer ring, whose buffer goes
  straight back. `pause_reading` cancels the RECV; what the kernel had already received
  is kept and delivered, in order, after `resume_reading` (which re-arms the RECV when
  the cancelled one has ended). RECV ends with 0 bytes at EOF, -ENOBUFS when every buffer
  was in use (re-armed at once), or an error (the connection fails with it).
- Writes: at most one SEND in flight per connection, so bytes cannot overtake each
  other; what is written meanwhile is queued and joined into the next SEND. The write
  buffer size counts the queue and the SEND in flight; water marks as in flow.py.
- Closing: `close` stops reading and closes once the queue is sent; `write_eof` shuts
  the write side down after it; `abort` cancels what is in flight. A bytes object given
  to a SEND is kept until its CQE says the kernel is done with it. Before a socket is
  closed, the SQEs written so far are submitted, so no SQE can reach the kernel naming an
  fd number that was closed (and perhaps reused) in between.

Chosen by the backend's capability (`poller.completion_io`): `serve` and `connect` here
fall back to plain TCP on any other backend. Measured against readiness-mode TCP it is
not faster in Python (see benchmarks/uring_completion_probe.py): it is opt-in, by
calling this module's `serve`/`connect`.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from collections.abc import Iterable
from typing import Any

from muxio.futures import Future
from muxio.loop import Loop
from muxio.pollers.uring_buffers import bytes_address
from muxio.pollers.uring_ring import IORING_CQE_BUFFER_SHIFT, IORING_CQE_F_MORE
from muxio.protocols import Protocol, ProtocolFactory
from muxio.transports import tcp
from muxio.transports.flow import water_marks
from muxio.transports.lifecycle import TransportLifecycle
from muxio.transports.uring_port import BUFFER_GROUP, CompletionPort, completion_port

log = logging.getLogger("muxio.uring_tcp")

_SEND_FLAGS = socket.MSG_NOSIGNAL | socket.MSG_WAITALL
_ACCEPT_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_QUIET_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)
_LINGER_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on with a zero timeout: close() sends RST and drops unsent data."""
_EOF = b""

class UringTcpTransport(TransportLifecycle):
    """The Transport a stream Protocol gets for one TCP connection, in completion mode."""

    __slots__ = (
        "_buffers", "_delivery_scheduled", "_eof_pending", "_eof_received", "_eof_written",
        "_fd", "_flush_callback", "_flush_scheduled", "_held", "_in_flight",
        "_in_flight_data", "_loop", "_port", "_queued", "_queued_size", "_reading", "_recv",
        "_sent_callback", "_server", "_sock", "_write_after_close", "_write_blocked",
        "__weakref__")

    _protocol: Protocol

    def __init__(self, loop: Loop, sock: socket.socket, protocol: Protocol,
                 port: CompletionPort, server: UringTcpServer | None = None) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        extra: dict[str, Any] = {"socket": sock, "transport": "tcp-uring",
                                 "backend": loop.backend}
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None
        extra["sockname"] = sock.getsockname()
        self._init_lifecycle(loop, protocol, extra)
        self._port = port
        self._buffers = port.buffers
        self._server = server
        self._high_water, self._low_water = water_marks(None, None)
        self._writing_paused = False
        self._reading = True
        self._eof_pending = False
        self._eof_written = False
        self._eof_received = False
        self._write_blocked = False
        self._write_after_close = 0
        self._recv: int | None = None
        """user_data of the live multishot RECV (None once its last CQE came)."""
        self._held: list[bytes] = []
        """Received while paused (or behind what was): delivered in order on resume."""
        self._delivery_scheduled = False
        self._queued: list[bytes] = []
        self._queued_size = 0
        self._in_flight: int | None = None
        self._in_flight_data = b""
        self._flush_scheduled = False
        # Bound once: the write path hands these to the loop and the port on every send.
        self._flush_callback = self._flush
        self._sent_callback = self._sent
        self._arm_recv()
        if server is not None:
            server._attach(self)
        try:
            protocol.connection_made(self)
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")

    # -- reading -------------------------------------------------------------------------

    def _arm_recv(self) -> None:
        self._recv = self._port.token(self._received)
        self._port.ring.prep_recv_multishot(self._fd, BUFFER_GROUP, self._recv)

    def _received(self, res: int, flags: int) -> None:
        ended = not flags & IORING_CQE_F_MORE
        if ended:
            self._recv = None
        if res > 0:
            data = self._buffers.take(flags >> IORING_CQE_BUFFER_SHIFT, res)
            if self._closing:
                return  # close() stopped reading; the buffer went back all the same
            if self._reading and not self._held:
                self._deliver(data)
            else:
                self._held.append(data)
            if ended and self._reading and not self._closing:
                self._arm_recv()
        elif res == 0:
            if not self._closing:
                self._held.append(_EOF)
                if self._reading:
                    self._deliver_held()
        elif res in (-errno.ENOBUFS, -errno.ECANCELED):
            # Every buffer was in use (they came back since), or pause_reading cancelled
            # the RECV and reading resumed before it ended: ask again.
            if self._reading and not self._closing and self._recv is None:
                self._arm_recv()
        elif not self._lost:
            self._fatal_error(_os_error(-res))

    def _deliver(self, data: bytes) -> None:
        try:
            self._protocol.data_received(data)
        except Exception as exc:
            self._protocol_failed(exc, "data_received")

    def _deliver_held(self) -> None:
        self._delivery_scheduled = False
        held = self._held
        while held and self._reading and not self._closing:
            data = held.pop(0)
            if not data:  # _EOF
                self._read_eof()
                return
            self._deliver(data)

    def _read_eof(self) -> None:
        self._reading = False
        self._eof_received = True
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._protocol_failed(exc, "eof_received")
            return
        if not keep_open or self._eof_written:
            self.close()  # nothing more can flow either way: release the socket

    def pause_reading(self) -> None:
        if self._reading and not self._closing:
            self._reading = False
            if self._recv is not None:
                self._port.cancel(self._recv)

    def resume_reading(self) -> None:
        if self._reading or self._closing or self._eof_received:
            return
        self._reading = True
        if self._held and not self._delivery_scheduled:
            self._delivery_scheduled = True
            self._loop.call_soon(self._deliver_held)
        if self._recv is None and _EOF not in self._held:
            self._arm_recv()
        # Else the cancelled RECV has not ended yet: its last CQE re-arms (see _received).

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._write_blocked:
            self._write_refused()
            return
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)  # the caller may change its buffer after write() returns
        self._queued.append(data)
        self._queued_size += len(data)
        if not self._flush_scheduled and self._in_flight is None:
            self._flush_scheduled = True
            self._loop.call_before_poll(self._flush_callback)
        if self._queued_size + len(self._in_flight_data) > self._high_water:
            self._maybe_pause()

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(chunks))

    def _flush(self) -> None:
        """Turn the queue into one SEND (if none is in flight); it goes with the wait."""
        self._flush_scheduled = False
        if self._in_flight is not None or not self._queued or self._lost:
            return
        queued = self._queued
        data = queued[0] if len(queued) == 1 else b"".join(queued)
        queued.clear()
        self._queued_size = 0
        self._start_send(data)

    def _start_send(self, data: bytes) -> None:
        self._in_flight_data = data
        self._in_flight = self._port.token(self._sent_callback)
        self._port.ring.prep_send(self._fd, bytes_address(data), len(data), _SEND_FLAGS,
                                  self._in_flight)

    def _sent(self, res: int, flags: int) -> None:
        data = self._in_flight_data
        self._in_flight = None
        self._in_flight_data = b""  # the kernel is done with it: drop our reference
        if self._lost:
            return
        if res < 0:
            self._fatal_error(_os_error(-res))
            return
        if res < len(data):  # MSG_WAITALL makes this rare (a signal): send the rest
            self._start_send(data[res:])
            return
        if self._queued:
            self._flush()
            return
        if self._writing_paused:
            self._maybe_resume()
            if self._queued:
                return  # resume_writing wrote more
        if self._closing:
            self._lose(None)
        elif self._eof_pending:
            self._shutdown_write()

    def _write_refused(self) -> None:
        if self._eof_pending or self._eof_written:
            raise RuntimeError("write() after write_eof(): the write side is shut down")
        self._write_after_close += 1
        if self._write_after_close == 1:
            log.debug("write() on a closing %s transport ignored", self._extra["peername"])

    def write_eof(self) -> None:
        if self._eof_pending or self._eof_written or self._closing:
            return
        self._eof_pending = True
        self._write_blocked = True
        if self._in_flight is None and not self._queued:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        self._eof_pending = False
        self._eof_written = True
        self._port.submit_now()  # SQEs naming this socket go before its shutdown
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc)
            return
        if self._eof_received:
            self.close()  # both directions are finished: release the socket

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._queued_size + len(self._in_flight_data)

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._write_blocked = True
        self._stop_reading()
        if self._in_flight is None and not self._queued:
            self._lose(None)
        elif self._in_flight is None and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_before_poll(self._flush_callback)

    def _stop_reading(self) -> None:
        self._reading = False
        self._held.clear()
        if self._recv is not None:
            self._port.cancel(self._recv)

    def _fatal_error(self, exc: Exception) -> None:
        if isinstance(exc, BrokenPipeError):
            # As tcp.py: EPIPE and ECONNRESET both mean the peer reset the connection.
            exc = ConnectionResetError(exc.errno, f"connection reset by peer ({exc})")
        if isinstance(exc, _QUIET_ERRORS):
            log.debug("%s: %s", self._extra["peername"], exc)
        else:
            log.warning("connection %s failed: %r", self._extra["peername"], exc)
        self._drop(exc)

    def _abort(self, exc: Exception | None) -> None:
        """abort(), or a protocol callback raised: the peer gets a reset (RST)."""
        if self._lost:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # already broken: the close is all there is to do
        self._drop(exc)

    def _drop(self, exc: Exception | None) -> None:
        """Stop all I/O now (cancel what is in flight) and drop what is queued."""
        if self._lost:
            return
        self._write_blocked = True
        self._closing = True
        self._stop_reading()
        self._queued.clear()
        self._queued_size = 0
        if self._in_flight is not None:
            self._port.cancel(self._in_flight)
        self._lose(exc)

    def _release(self) -> None:
        if not self._loop.is_closed():
            self._port.submit_now()  # the kernel takes its references before the close
        self._sock.close()
        if self._server is not None:
            self._server._detach(self)
            self._server = None


class UringTcpServer(tcp.ListeningServer[UringTcpTransport]):
    """Listening sockets with a multishot ACCEPT each; a transport per connection."""

    def __init__(self, loop: Loop, protocol_factory: ProtocolFactory,
                 sockets: list[socket.socket], port: CompletionPort, *,
                 accept_retry_delay: float = 0.1) -> None:
        self._loop = loop
        self._port = port
        self._protocol_factory = protocol_factory
        self.sockets = sockets
        self.connections: set[UringTcpTransport] = set()
        self._accept_retry_delay = accept_retry_delay
        self._closed = False
        self._accepts: dict[int, socket.socket] = {}
        self.accept_errors = 0
        self._out_of_resources = False  # logged once per episode, until an accept works
        for sock in sockets:
            self._arm_accept(sock)

    def _arm_accept(self, listener: socket.socket) -> None:
        user_data = 0

        def accepted(res: int, flags: int) -> None:
            self._accepted(listener, user_data, res, flags)

        user_data = self._port.token(accepted, gives_fd=True)
        self._accepts[user_data] = listener
        self._port.ring.prep_accept_multishot(listener.fileno(), _ACCEPT_FLAGS, user_data)

    def _accepted(self, listener: socket.socket, user_data: int, res: int, flags: int) -> None:
        ended = not flags & IORING_CQE_F_MORE
        if ended:
            self._accepts.pop(user_data, None)
        if res >= 0:
            if self._out_of_resources:
                self._out_of_resources = False
                log.warning("accepting connections again (%d failed accepts before)",
                            self.accept_errors)
            self._start_connection(res)
        elif -res in _RESOURCE_ERRNOS:
            self.accept_errors += 1
            if not self._out_of_resources:
                self._out_of_resources = True
                log.error("accept failed (%s): too many open files or no memory; pausing "
                          "accepts for %.2f s, %d connections open. Raise the fd limit "
                          "(ulimit -n).", os.strerror(-res), self._accept_retry_delay,
                          len(self.connections))
            if ended and not self._closed:
                self._loop.call_later(self._accept_retry_delay, self._rearm, listener)
            elif not self._closed:
                # The kernel kept the multishot ACCEPT armed: pause it ourselves.
                self._port.cancel(user_data)
                del self._accepts[user_data]
                self._loop.call_later(self._accept_retry_delay, self._rearm, listener)
            return
        if ended and not self._closed and res != -errno.ECANCELED:
            self._arm_accept(listener)

    def _rearm(self, listener: socket.socket) -> None:
        if not self._closed:
            self._arm_accept(listener)

    def _start_connection(self, fd: int) -> None:
        conn = socket.socket(fileno=fd)
        if self._closed:
            conn.close()
            return
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            protocol = self._protocol_factory()
        except Exception as exc:
            conn.close()
            self._loop.call_exception_handler({
                "message": "protocol factory failed; connection refused", "exception": exc})
            return
        UringTcpTransport(self._loop, conn, protocol, self._port, self)

    def close(self) -> None:
        """Stop listening; established connections go on (see close_clients)."""
        if self._closed:
            return
        self._closed = True
        for user_data in self._accepts:
            self._port.cancel(user_data)
        self._accepts.clear()
        if not self._loop.is_closed():
            self._port.submit_now()
        for sock in self.sockets:
            sock.close()


def serve(protocol_factory: ProtocolFactory, host: str | None = "127.0.0.1", port: int = 0,
          *, loop: Loop, backlog: int | None = None, reuse_port: bool = False,
          accept_retry_delay: float = 0.1) -> UringTcpServer | tcp.TcpServer:
    """`tcp.serve`, in completion mode when the loop's backend is io_uring."""
    completions = completion_port(loop)
    if completions is None:
        return tcp.serve(protocol_factory, host, port, loop=loop, backlog=backlog,
                         reuse_port=reuse_port, accept_retry_delay=accept_retry_delay)
    sockets = tcp._listening_sockets(host, port, backlog or tcp.system_backlog(), reuse_port)
    return UringTcpServer(loop, protocol_factory, sockets, completions,
                          accept_retry_delay=accept_retry_delay)


def connect(protocol_factory: ProtocolFactory, host: str, port: int, *, loop: Loop,
            timeout: float | None = None) -> Future[tuple[Any, Protocol]]:
    """`tcp.connect`, in completion mode when the loop's backend is io_uring: the
    connect waits for writability like tcp.connect, then the connection is handed over."""
    completions = completion_port(loop)
    if completions is None:
        return tcp.connect(protocol_factory, host, port, loop=loop, timeout=timeout)
    return tcp.connect_socket(
        protocol_factory, host, port, loop=loop, timeout=timeout,
        transport=lambda sock, protocol: UringTcpTransport(loop, sock, protocol, completions))


_ERRNO_CLASSES: dict[int, type[OSError]] = {
    errno.ECONNREFUSED: ConnectionRefusedError,
    errno.ECONNRESET: ConnectionResetError,
    errno.EPIPE: BrokenPipeError,
    errno.ECONNABORTED: ConnectionAbortedError,
    errno.ETIMEDOUT: TimeoutError,
}


def _os_error(code: int, what: str = "") -> OSError:
    text = os.strerror(code)
    return _ERRNO_CLASSES.get(code, OSError)(code, f"{what}: {text}" if what else text)
