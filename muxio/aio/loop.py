"""An asyncio event loop whose I/O is muxio's: its Loop on any backend, its transports.

Theory of operation
-------------------
`EventLoop` is an `asyncio.SelectorEventLoop` in which a muxio `Loop` does the
selector's job, on whichever backend the registry offers (select, poll, epoll, epoll-et,
selectors, plug-ins; chosen with the usual precedence, see muxio.config):

- Scheduling is asyncio's own: call_soon / call_later and their Handles and contexts,
  the exception handler, debug mode and its thread checks, executors, getaddrinfo,
  asyncgen hooks. asyncio's C-accelerated Future and Task run on it unchanged.
- One iteration (`_run_once`):
  1. asyncio's due timers join its ready queue, and the callbacks queued so far run
     (callbacks they schedule wait for the next iteration, as in asyncio);
  2. the muxio loop runs one iteration (`Loop.run_once(timeout)`): it sends the writes
     queued since its last poll, polls (not at all if asyncio callbacks are ready, else
     until asyncio's next timer or muxio's own, whichever is first) and dispatches the
     events. muxio transports read right there and call their protocols; an asyncio
     fd callback (add_reader, sock_recv, accept, pipes) joins asyncio's ready queue.
     Then muxio's own due callbacks run.
  Ready callbacks run *before* the poll because muxio's transports deliver data during
  the poll: so everything scheduled before a poll still runs before the data it brings,
  which is asyncio's order (there, I/O callbacks queue up behind what is already ready).
  When a callback stops the loop, the loop leaves after step 1 as asyncio does, sending
  the writes of that pass first (`Loop.flush()`); a loop stopped before it started
  polls once with a zero timeout, as asyncio's does.
- Transports handed to asyncio protocols are muxio's: TCP and UNIX stream sockets get a
  TcpTransport, datagram sockets a UdpTransport, KCP sessions a KcpTransport
  (muxio.aio.kcp), each behind a bridge that is an `asyncio.Transport` (bridges.py).
- fd callbacks are level-triggered on every backend, edge-triggered ones included
  (handles.py explains how).
- Child processes are awaited with a pidfd on the loop (Linux >= 5.3): no watcher
  thread, no SIGCHLD handler; child watchers set on the policy are not consulted.
  Where pidfds are unavailable, asyncio's child watcher does it.
- Signals, pipes, UNIX sockets, sock_* and server accept loops are asyncio's unix_events
  and selector_events code, running on the fd API above.
- TLS (`ssl=`, `start_tls`) is muxio's TLS layer (muxio/transports/tls) between the
  muxio transport and the bridge (an SslBridge): asyncio's handshake and error rules
  (the handshake ends before the protocol's connection_made; a refused certificate
  raises the `ssl.SSLError` asyncio raises, a handshake over `ssl_handshake_timeout`
  ConnectionAbortedError, a peer gone ConnectionResetError; see bridges.tls_layer).
  start_tls takes any muxio stream connection, KCP ones too.

The EventLoop owns its muxio Loop (`muxio_loop`): closing one closes the other. Hand
`muxio_loop` to muxio APIs (transports, the resolver) to use them from asyncio code;
muxio Futures are awaitable (muxio.futures).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import heapq
import logging
import os
import selectors
import socket
import ssl
import weakref
from asyncio import base_events, events, exceptions, format_helpers, futures, unix_events
from collections.abc import Callable, Mapping
from typing import Any, cast

from muxio.aio.bridges import DatagramBridge, InnerLink, SslBridge, StreamBridge, tls_layer
from muxio.aio.errors import as_asyncio_error
from muxio.aio.handles import IoHandle, LevelTriggeredHandle, ReadinessProbe
from muxio.errors import BadFdError, PollerError
from muxio.loop import Loop
from muxio.pollers.base import FileLike, fd_of
from muxio.transports.tcp import TcpTransport
from muxio.transports.udp import UdpTransport

log = logging.getLogger("muxio.aio")

_MIN_SCHEDULED_TIMER_HANDLES = 100
_MIN_CANCELLED_TIMER_HANDLES_FRACTION = 0.5
MAXIMUM_POLL_TIMEOUT = 24 * 3600
"""Longest single wait, as asyncio's (a day)."""


class _ReadyHandle(events.Handle):
    """asyncio's Handle as `call_soon` makes it when debug mode is off: its fields are
    filled by call_soon itself, without Handle.__init__'s debug-mode lookup (the loop's
    hottest allocation: every Task step and Future callback). Same class family, same
    fields, same behaviour."""

    __slots__ = ()


class _ReadyTimerHandle(events.TimerHandle):
    """asyncio's TimerHandle as `call_at` makes it when debug mode is off (see
    _ReadyHandle)."""

    __slots__ = ()


_new_handle = object.__new__
_copy_context = contextvars.copy_context


_HANDLE_FIELDS = ("_callback", "_args", "_cancelled", "_loop", "_source_traceback", "_repr",
                  "__weakref__", "_context")
_FAST_HANDLES = (tuple(events.Handle.__slots__) == _HANDLE_FIELDS
                 and set(events.TimerHandle.__slots__) == {"_scheduled", "_when"})
"""The fast paths are used only where asyncio's handles have exactly the fields they
fill (the Pythons tested: 3.11 to 3.13)."""
_RUN_INLINE = frozenset({events.Handle, events.TimerHandle, _ReadyHandle, _ReadyTimerHandle,
                         IoHandle})
"""Handle classes whose `_run` is asyncio's own: the ready loop runs them inline."""


def _fileno(fileobj: FileLike) -> int:
    try:
        return fd_of(fileobj)
    except BadFdError as exc:
        raise as_asyncio_error(exc) from None


def _pidfd_works() -> bool:
    """pidfd_open exists and the kernel (>= 5.3) and sandbox allow it."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def _set_nodelay(sock: socket.socket) -> None:
    if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
            and sock.proto in (0, socket.IPPROTO_TCP)):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _FdTable:
    """What asyncio's inherited code reads of `loop._selector`: the fds with asyncio
    callbacks and their (reader, writer) handles, in the selectors API's shape, and
    `close()`. The polling itself is the muxio loop's."""

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop

    def get_key(self, fileobj: FileLike) -> selectors.SelectorKey:
        fd = _fileno(fileobj)
        slot = self._loop._fd_handles.get(fd)
        if slot is None:
            raise KeyError(f"{fileobj!r} is not registered")
        reader, writer = slot
        events_ = ((selectors.EVENT_READ if reader is not None else 0)
                   | (selectors.EVENT_WRITE if writer is not None else 0))
        return selectors.SelectorKey(fileobj, fd, events_, (reader, writer))

    def get_map(self) -> Mapping[int, selectors.SelectorKey]:
        return {fd: self.get_key(fd) for fd in self._loop._fd_handles}

    def close(self) -> None:
        self._loop._muxio.close()


class EventLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop API over a muxio Loop (see the module docstring)."""

    # Set by asyncio's BaseEventLoop / BaseSelectorEventLoop; declared for the type checker.
    _ready: collections.deque[events.Handle]
    _scheduled: list[events.TimerHandle]
    _stopping: bool
    _timer_cancelled_count: int
    _clock_resolution: float
    _debug: bool
    _current_handle: events.Handle | None
    _transports: weakref.WeakValueDictionary[int, Any]
    _check_closed: Callable[[], None]
    _closed: bool

    def __init__(self, backend: str | None = None, *, muxio_loop: Loop | None = None) -> None:
        """`backend` resolves like `muxio.loop.Loop(backend)` (argument, MUXIO_BACKEND,
        config file, auto); `muxio_loop` hands over a ready-made Loop instead (e.g. one
        over a custom poller), which this loop then owns."""
        self._closed = True  # until asyncio's __init__ runs: __del__ reads it if Loop() fails
        self._muxio = muxio_loop if muxio_loop is not None else Loop(backend)
        self._fd_handles: dict[int, list[IoHandle | None]] = {}
        self._probe = ReadinessProbe() if self._muxio.edge_triggered else None
        self._pidfds: dict[int, int] = {}
        self._use_pidfd = _pidfd_works()
        self._poll_before_leaving = False
        self._muxio.set_exception_handler(self._muxio_exception)
        try:
            super().__init__(selector=cast(selectors.BaseSelector, _FdTable(self)))
        except BaseException:
            self._muxio.close()
            raise
        # Called from C for every Future (get_debug) and every timer (time): as built-in
        # callables they cost no Python frame. Same answers as asyncio's methods; the
        # clock is the muxio loop's (a FakeClock there moves asyncio's timers too).
        vars(self).update(get_debug=functools.partial(getattr, self, "_debug"),
                          time=self._muxio.time,
                          create_future=functools.partial(futures.Future, loop=self))

    # -- what muxio adds ------------------------------------------------------------------

    @property
    def muxio_loop(self) -> Loop:
        """The muxio Loop underneath (for muxio transports, the resolver, statistics)."""
        return self._muxio

    @property
    def backend(self) -> str:
        """The poller backend in use (e.g. 'epoll-et')."""
        return self._muxio.backend

    def _muxio_exception(self, loop: Loop, context: dict[str, Any]) -> None:
        """Errors the muxio loop and transports report go to asyncio's handler, with the
        bridge and the asyncio protocol in place of muxio's inner objects."""
        protocol = context.get("protocol")
        if isinstance(protocol, (StreamBridge, DatagramBridge)):
            context = {**context, "transport": protocol, "protocol": protocol.get_protocol()}
        self.call_exception_handler(context)

    # -- one iteration --------------------------------------------------------------------

    def run_forever(self) -> None:
        # Stopped before it started: asyncio still polls once (timeout 0) before leaving.
        self._poll_before_leaving = self._stopping
        super().run_forever()

    def _run_once(self) -> None:
        """asyncio's due timers and the callbacks queued so far, then one muxio iteration
        (send queued writes, poll, dispatch). The ready callbacks come first so that
        everything scheduled before a poll runs before the data that poll delivers, which
        muxio's transports hand over at once: asyncio's order, where I/O callbacks queue
        up behind what is already there."""
        scheduled = self._scheduled
        if (len(scheduled) > _MIN_SCHEDULED_TIMER_HANDLES and self._timer_cancelled_count
                / len(scheduled) > _MIN_CANCELLED_TIMER_HANDLES_FRACTION):
            kept = []
            for timer in scheduled:
                if timer._cancelled:
                    timer._scheduled = False  # type: ignore[attr-defined]
                else:
                    kept.append(timer)
            heapq.heapify(kept)
            self._scheduled = scheduled = kept
            self._timer_cancelled_count = 0
        else:
            while scheduled and scheduled[0]._cancelled:
                self._timer_cancelled_count -= 1
                timer = heapq.heappop(scheduled)
                timer._scheduled = False  # type: ignore[attr-defined]

        ready = self._ready
        end_time = self.time() + self._clock_resolution
        while scheduled:
            if scheduled[0].when() >= end_time:
                break
            timer = heapq.heappop(scheduled)
            timer._scheduled = False  # type: ignore[attr-defined]
            ready.append(timer)

        if self._debug:
            self._run_ready_debug(len(ready))
        else:
            inline = _RUN_INLINE
            for _ in range(len(ready)):
                handle = ready.popleft()
                if handle._cancelled:
                    continue
                if handle.__class__ in inline:
                    # Handle._run without its frame: one Python call less per callback.
                    try:
                        handle._context.run(handle._callback,  # type: ignore[attr-defined]
                                            *handle._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._callback_failed(handle, exc)
                else:
                    handle._run()

        if self._stopping and not self._poll_before_leaving:
            self._muxio.flush()  # stop() ran in this pass: leave now, writes sent
            return
        self._poll_before_leaving = False
        timeout: float | None = None
        if ready or self._stopping:
            timeout = 0
        elif scheduled:
            timeout = min(max(0.0, scheduled[0].when() - self.time()), MAXIMUM_POLL_TIMEOUT)
        self._muxio.run_once(timeout)

    def _callback_failed(self, handle: events.Handle, exc: BaseException) -> None:
        """What asyncio's Handle._run reports when its callback raises."""
        source = format_helpers._format_callback_source(
            handle._callback, handle._args)  # type: ignore[attr-defined]
        context: dict[str, Any] = {"message": f"Exception in callback {source}",
                                   "exception": exc, "handle": handle}
        if handle._source_traceback:  # type: ignore[attr-defined]
            context["source_traceback"] = handle._source_traceback  # type: ignore[attr-defined]
        self.call_exception_handler(context)

    def call_soon(self, callback: Callable[..., object], *args: Any,  # type: ignore[override]
                  context: contextvars.Context | None = None) -> events.Handle:
        """asyncio's call_soon; with debug mode off, one lean Handle and an append."""
        if self._debug or self._closed or not _FAST_HANDLES:
            return super().call_soon(callback, *args, context=context)
        handle: Any = _new_handle(_ReadyHandle)
        handle._context = _copy_context() if context is None else context
        handle._loop = self
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)
        return cast(events.Handle, handle)

    def call_at(self, when: float, callback: Callable[..., object],  # type: ignore[override]
                *args: Any, context: contextvars.Context | None = None) -> events.TimerHandle:
        """asyncio's call_at; with debug mode off, one lean TimerHandle and a heap push."""
        if when is None or self._debug or self._closed or not _FAST_HANDLES:
            return super().call_at(when, callback, *args, context=context)
        timer: Any = _new_handle(_ReadyTimerHandle)
        timer._context = _copy_context() if context is None else context
        timer._loop = self
        timer._callback = callback
        timer._args = args
        timer._cancelled = False
        timer._repr = None
        timer._source_traceback = None
        timer._when = when
        timer._scheduled = True
        heapq.heappush(self._scheduled, timer)
        return cast(events.TimerHandle, timer)

    def call_later(self, delay: float, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any, context: contextvars.Context | None = None,
                   ) -> events.TimerHandle:
        if delay is None:  # asyncio's TypeError, from asyncio
            return super().call_later(delay, callback, *args,  # type: ignore[unreachable]
                                      context=context)
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def _run_ready_debug(self, count: int) -> None:
        ready = self._ready
        for _ in range(count):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                self._current_handle = handle
                started = self.time()
                handle._run()
                took = self.time() - started
                if took >= self.slow_callback_duration:
                    log.warning("Executing %s took %.3f seconds",
                                base_events._format_handle(handle),  # type: ignore[attr-defined]
                                took)
            finally:
                self._current_handle = None

    # -- fd callbacks (asyncio's internal API, used by add_reader, sock_*, accept, pipes) --

    def _io_handle(self, callback: Callable[..., object], args: tuple[Any, ...], fd: int,
                   writer: bool) -> IoHandle:
        if self._probe is not None:
            return LevelTriggeredHandle(callback, args, self, fd=fd, writer=writer,
                                        ready_queue=self._ready, drop=self._drop_cancelled,
                                        probe=self._probe)
        return IoHandle(callback, args, self, fd=fd, writer=writer, ready_queue=self._ready,
                        drop=self._drop_cancelled)

    def _add_reader(self, fd: FileLike, callback: Callable[..., object],
                    *args: Any) -> events.Handle:
        return self._add_io(fd, callback, args, writer=False)

    def _add_writer(self, fd: FileLike, callback: Callable[..., object],
                    *args: Any) -> events.Handle:
        return self._add_io(fd, callback, args, writer=True)

    def _add_io(self, fileobj: FileLike, callback: Callable[..., object],
                args: tuple[Any, ...], *, writer: bool) -> events.Handle:
        self._check_closed()
        fd = _fileno(fileobj)
        handle = self._io_handle(callback, args, fd, writer)
        try:
            if writer:
                self._muxio.add_writer(fd, handle.on_event)
            else:
                self._muxio.add_reader(fd, handle.on_event)
        except PollerError as exc:
            raise as_asyncio_error(exc) from exc
        slot = self._fd_handles.get(fd)
        if slot is None:
            slot = self._fd_handles[fd] = [None, None]
        old = slot[writer]
        slot[writer] = handle
        if old is not None:
            old.cancel()
        return handle

    def _remove_reader(self, fd: FileLike) -> bool:
        return self._remove_io(fd, writer=False)

    def _remove_writer(self, fd: FileLike) -> bool:
        return self._remove_io(fd, writer=True)

    def _remove_io(self, fileobj: FileLike, *, writer: bool) -> bool:
        if self.is_closed():
            return False
        fd = _fileno(fileobj)
        slot = self._fd_handles.get(fd)
        if slot is None or slot[writer] is None:
            return False
        handle = slot[writer]
        assert handle is not None
        slot[writer] = None
        if slot[not writer] is None:
            del self._fd_handles[fd]
        handle.cancel()
        try:
            if writer:
                self._muxio.remove_writer(fd)
            else:
                self._muxio.remove_reader(fd)
        except PollerError as exc:
            # select/poll: the fd was closed while still watched the other way. The muxio
            # loop no longer calls us for it; the poller forgets it when it is reused.
            log.debug("removing fd %d from the %s poller: %s", fd, self.backend, exc)
        return True

    def _drop_cancelled(self, fd: int, writer: bool, handle: IoHandle) -> None:
        """A cancelled handle's fd was reported: unregister it (asyncio does the same)."""
        slot = self._fd_handles.get(fd)
        if slot is not None and slot[writer] is handle:
            self._remove_io(fd, writer=writer)

    # -- transports: muxio's, behind asyncio.Transport bridges ---------------------------

    def _make_socket_transport(self, sock: socket.socket, protocol: asyncio.BaseProtocol,
                               waiter: asyncio.Future[Any] | None = None, *,
                               extra: dict[str, Any] | None = None,
                               server: asyncio.Server | None = None) -> StreamBridge:
        _set_nodelay(sock)
        # A client's create_connection returns before the first data_received, as on
        # asyncio's loop (StreamBridge.hold_reading); accepted connections read at once.
        hold = waiter if server is None else None
        bridge = StreamBridge(self, protocol, sock=sock, extra=extra, server=server,
                              hold_until=hold)
        try:
            TcpTransport(self._muxio, sock, bridge)
        except PollerError as exc:
            sock.close()
            raise as_asyncio_error(exc) from exc
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled,  # type: ignore[attr-defined]
                           waiter, None)
        return bridge

    def _make_datagram_transport(self, sock: socket.socket,
                                 protocol: asyncio.DatagramProtocol, address: Any = None,
                                 waiter: asyncio.Future[Any] | None = None,
                                 extra: dict[str, Any] | None = None) -> DatagramBridge:
        bridge = DatagramBridge(self, protocol, sock, address, extra)
        try:
            UdpTransport(self._muxio, sock, bridge)
        except PollerError as exc:
            sock.close()
            raise as_asyncio_error(exc) from exc
        if waiter is not None:
            bridge.hold_reading(waiter)
            self.call_soon(futures._set_result_unless_cancelled,  # type: ignore[attr-defined]
                           waiter, None)
        return bridge

    def _make_ssl_transport(self, rawsock: socket.socket, protocol: asyncio.BaseProtocol,
                            sslcontext: ssl.SSLContext | None,
                            waiter: asyncio.Future[Any] | None = None, *,
                            server_side: bool = False, server_hostname: str | None = None,
                            extra: dict[str, Any] | None = None,
                            server: asyncio.Server | None = None,
                            ssl_handshake_timeout: float | None = None,
                            ssl_shutdown_timeout: float | None = None,
                            call_connection_made: bool = True) -> SslBridge:
        """TCP, then muxio's TLS layer, then the bridge: the asyncio protocol hears of the
        connection once the handshake is done, and `waiter` says how it went."""
        _set_nodelay(rawsock)
        # No hold on reading (unlike plain TCP): asyncio's SSL transport, too, delivers
        # the records that came with the handshake right after connection_made.
        bridge = SslBridge(self, protocol, sock=rawsock, extra=extra, server=server)
        bridge.attach_server()  # from the accept on, as asyncio counts it
        link = InnerLink()
        layer = tls_layer(self, bridge, sslcontext, server_side=server_side,
                          server_hostname=server_hostname, waiter=waiter,
                          handshake_timeout=ssl_handshake_timeout,
                          shutdown_timeout=ssl_shutdown_timeout, link=link)
        try:
            link.inner = TcpTransport(self._muxio, rawsock, layer)
        except PollerError as exc:
            rawsock.close()
            raise as_asyncio_error(exc) from exc
        return bridge

    async def _sendfile_native(self, transp: Any, file: Any, offset: int,
                               count: int | None) -> int:
        """os.sendfile on the transport's socket, after the bytes written before it."""
        if not isinstance(transp, StreamBridge) or transp._sock is None:
            raise exceptions.SendfileNotAvailableError(
                f"{transp!r} has no socket to sendfile() on")
        fd = transp._sock_fd
        if self._transports.get(fd) is transp:
            del self._transports[fd]
        resume_reading = transp.is_reading()
        transp.pause_reading()
        transp.refuse_writes("unable to write; sendfile is in progress")
        try:
            await transp.wait_drained()
            return await self.sock_sendfile(transp._sock, file, offset, count, fallback=False)
        finally:
            transp.accept_writes()
            if resume_reading:
                transp.resume_reading()
            if not transp.is_closing():
                self._transports[fd] = transp

    # -- TLS: muxio's layer between the muxio transport and the bridge ------------------

    async def start_tls(self, transport: asyncio.BaseTransport,
                        protocol: asyncio.BaseProtocol, sslcontext: ssl.SSLContext, *,
                        server_side: bool = False, server_hostname: str | None = None,
                        ssl_handshake_timeout: float | None = None,
                        ssl_shutdown_timeout: float | None = None) -> asyncio.Transport:
        """Upgrade a connection to TLS, as asyncio's start_tls: the TLS layer becomes the
        muxio transport's protocol, the handshake runs, and the new transport is
        returned; `protocol` keeps its state (its connection_made is not called again)."""
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, "
                            f"got {sslcontext!r}")
        if not isinstance(transport, StreamBridge) or not transport._start_tls_compatible:
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        inner = transport.muxio_transport
        waiter = self.create_future()
        upgraded = SslBridge(self, protocol, sock=transport._sock, announce=False)
        link = InnerLink()
        layer = tls_layer(self, upgraded, sslcontext, server_side=server_side,
                          server_hostname=server_hostname, waiter=waiter,
                          handshake_timeout=ssl_handshake_timeout,
                          shutdown_timeout=ssl_shutdown_timeout, link=link)
        transport.hand_over(upgraded)
        inner.set_protocol(layer)
        link.inner = inner
        layer.connection_made(inner)  # a client sends its ClientHello now
        if not inner.is_reading():
            inner.resume_reading()
        try:
            await waiter
        except BaseException:
            upgraded.close()
            raise
        return upgraded

    # -- child processes: a pidfd on the loop ----------------------------------------------

    async def _make_subprocess_transport(  # noqa: PLR0917 - asyncio's signature
            self, protocol: asyncio.BaseProtocol, args: Any, shell: bool, stdin: Any,
            stdout: Any, stderr: Any, bufsize: int, extra: Any = None, **kwargs: Any) -> Any:
        if not self._use_pidfd:
            return await super()._make_subprocess_transport(  # type: ignore[misc]
                protocol, args, shell, stdin, stdout, stderr, bufsize, extra=extra, **kwargs)
        waiter = self.create_future()
        transport = unix_events._UnixSubprocessTransport(  # type: ignore[attr-defined]
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, waiter=waiter,
            extra=extra, **kwargs)
        self._watch_child(transport)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport

    def _watch_child(self, transport: Any) -> None:
        pid = transport.get_pid()
        pidfd = os.pidfd_open(pid)
        self._pidfds[pidfd] = pid
        try:
            self._add_reader(pidfd, self._child_exited, pid, pidfd, transport)
        except BaseException:
            del self._pidfds[pidfd]
            os.close(pidfd)
            raise

    def _child_exited(self, pid: int, pidfd: int, transport: Any) -> None:
        """The pidfd is readable: the child has exited; reap it (this never blocks)."""
        self._remove_reader(pidfd)
        del self._pidfds[pidfd]
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            returncode = 255
            log.warning("child process %d was reaped by someone else (a child watcher or "
                        "os.wait in another thread?); reporting returncode 255", pid)
        else:
            returncode = os.waitstatus_to_exitcode(status)
        # One iteration later, as asyncio does: pipe data read in this one comes first.
        self.call_soon(transport._process_exited, returncode)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """asyncio's close; also stops watching children still running and closes the
        muxio loop."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        for pidfd in list(self._pidfds):
            self._remove_reader(pidfd)
            os.close(pidfd)
        self._pidfds.clear()
        super().close()
        self._fd_handles.clear()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} backend={self.backend!r} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()}>")
