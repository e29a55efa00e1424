"""The HTTP handler: a thin shell that moves bytes between a Transport and the core.

Theory of operation
-------------------
`data_received` feeds the core (`ServerConnection`) and then drains its events: a request
is collected with its body, handed to the app, and the response goes out. Bytes responses
of one batch of pipelined requests are joined into one write. A streamed body is pulled
one chunk at a time while the transport is not paused (`pause_writing` stops the pull,
`resume_writing` resumes it), so a large file never sits in memory.

Back-pressure toward the client: while a response is still going out, later pipelined
requests stay queued in the core (at most `pipeline_depth` of them parsed, the rest of the
read as bytes) and reading is paused, so a client that sends without reading cannot grow
our buffers past one read, `pipeline_depth` requests and the transport's high-water mark.

Fairness: one call makes at most `responses_per_turn` responses. If the client has
pipelined more, reading stays paused and the rest continues from `call_soon`, in the next
loop iteration, after every other connection's turn (and the loop's timers and signals):
a client pipelining thousands of requests delays the others by at most
`responses_per_turn` responses each, instead of by everything it sent in one read.

Timeouts use one timer per connection and a deadline field: moving the deadline on the
hot path is an assignment, and when the timer fires early it re-arms itself for the
remaining time. The deadline depends on where the client is:

- no request byte yet: keep-alive timeout (the first request: header timeout from connect);
- inside a head: header timeout from its first byte, never extended (slowloris);
- inside a body: body timeout, extended by each piece;
- while we wait for the client to take a response (writing paused): send timeout, checked
  for progress: when it expires and the client took bytes meanwhile, it starts again;
  when it took none, the connection is aborted (a reader that never reads must not hold a
  socket and a file forever; a slow one that keeps reading is never cut);
- after we closed (idle, `Connection: close`): send timeout for the buffered bytes to
  go out, then the connection is aborted;
- after an error response: linger timeout, then the connection is dropped.

An error response (the core's `HttpError`, or a timeout) is followed by a half-close: we
shut our write side and drain what the client still sends until it closes or the linger
timeout passes, so that it reads the response instead of a connection reset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any, cast

from muxio.handlers.http.app import App, Router
from muxio.handlers.http.config import HttpConfig
from muxio.handlers.http.core import DateCache, Ours, Phase, ServerConnection
from muxio.handlers.http.errors import HttpError, HttpUsageError, RequestTimeoutError
from muxio.handlers.http.events import CONNECTION_CLOSED, END_OF_MESSAGE, NEED_DATA, Data
from muxio.handlers.http.messages import Request, Response
from muxio.protocols import Cancellable, Protocol, ProtocolFactory, Scheduler, Transport

log = logging.getLogger("muxio.http")
access_log = logging.getLogger("muxio.http.access")
"""One INFO record per response: peer, request line, status, body bytes. Off unless the
logger is enabled at INFO (`muxio serve http --access-log`)."""

_INFO = logging.INFO
_ACCESS_LEVELS: dict[int, bool] = getattr(access_log, "_cache", {})
"""logging's per-logger cache of isEnabledFor answers (cleared, not replaced, when levels
change). A cached False is final; anything else is asked of isEnabledFor."""
_MUST_CLOSE = Ours.MUST_CLOSE
_NO_ROUTE: dict[str, App] = {}
_NEVER = float("inf")
_IDLE, _HEAD, _BODY = Phase.IDLE, Phase.HEAD, Phase.BODY
INTERNAL_ERROR = Response.text("500 Internal Server Error\n", 500, close=True)


class HttpProtocol(Protocol):
    """One HTTP/1.1 connection: `HttpProtocol(app, scheduler, config)` per connection
    (see `http_protocol_factory`)."""

    __slots__ = (
        "transport", "_app", "_scheduler", "_config", "_conn", "_request", "_body",
        "_stream", "_source", "_out", "_writing_paused", "_reading_paused", "_lingering",
        "_eof", "_closed", "_deadline", "_timer", "_timer_when", "_phase", "_restart",
        "_peer", "_wall_clock", "_keepalive_timeout", "_time", "_turn", "_continuation",
        "_shutting", "_unsent", "_done", "_routes")

    def __init__(self, app: App, scheduler: Scheduler, config: HttpConfig | None = None,
                 *, date_cache: DateCache | None = None) -> None:
        self.transport: Transport | None = None
        self._app = app
        self._scheduler = scheduler
        self._config = config = config or HttpConfig()
        self._conn = ServerConnection(config, date_cache=date_cache)
        self._request: Request | None = None
        self._body: list[bytes] = []
        self._stream: Iterator[bytes] | None = None
        self._source: object = None
        self._out: list[bytes] = []
        self._writing_paused = False
        self._reading_paused = False
        self._lingering = False
        self._eof = False
        self._closed = False
        self._deadline = _NEVER
        self._timer: Cancellable | None = None
        self._timer_when = _NEVER
        self._phase = _IDLE
        self._restart = False
        self._peer: Any = None
        self._wall_clock = time.time
        self._keepalive_timeout = config.keepalive_timeout
        self._time = scheduler.time
        self._turn = config.responses_per_turn
        self._continuation: Cancellable | None = None
        self._shutting = False  # we closed the transport; its buffer is draining
        self._done = False
        """_lingering or _closed or _shutting, in one flag for the hot path."""
        self._routes: dict[str, dict[str, App]] = (
            app.exact_handlers if isinstance(app, Router) else {})
        """The app's exact routes, looked up here (see Router.exact_handlers)."""
        self._unsent = 0  # the transport's buffer when the send timeout was last armed

    # -- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._peer = transport.get_extra_info("peername")
        self._set_deadline(self._scheduler.time() + self._config.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return  # draining after an error response, or closing
        conn = self._conn
        conn.receive_data(data)
        if self._continuation is None:  # else the scheduled turn takes it
            self._process()
        if (self._restart and not self._done and self._stream is None
                and not self._writing_paused and conn.their_phase is _IDLE):
            # _rearm's hot case, inlined: a response went out and the client is between
            # requests. The keep-alive deadline only moves later, so the timer is left
            # alone (it re-arms itself when it fires early).
            deadline = self._time() + self._keepalive_timeout
            self._deadline = deadline
            if deadline < self._timer_when:
                self._set_deadline(deadline)
            self._phase = _IDLE
            self._restart = False
        else:
            self._rearm()

    def eof_received(self) -> bool:
        self._eof = True
        if self._done:
            return False
        self._conn.receive_data(b"")
        if self._continuation is None:
            self._process()
        self._rearm()
        transport = self.transport
        # Keep the transport open while responses are still going out (half-close).
        return transport is not None and not transport.is_closing()

    def pause_writing(self) -> None:
        self._writing_paused = True
        if not self._closed and not self._lingering:
            self._arm_send_timeout()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._closed or self._shutting:
            return
        if self._stream is not None:
            self._pump()
        transport = self.transport
        if (self._stream is None and not self._closed and transport is not None
                and not transport.is_closing()):
            self._process()
        self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._continuation is not None:
            self._continuation.cancel()
            self._continuation = None
        self._end_stream()
        self._conn.close()
        self._request = None
        self.transport = None

    # -- requests --------------------------------------------------------------------------

    def _process(self) -> None:
        """Handle the core's events, as far as the current response and this turn's
        budget (`responses_per_turn`) allow; a turn cut short continues from call_soon."""
        conn = self._conn
        transport = self.transport
        assert transport is not None
        out = self._out
        budget = self._turn
        drained = False  # nothing is buffered in the core: no pause check needed
        while self._stream is None and not self._writing_paused:
            if not budget:
                self._continue_later()
                break
            # The hot path: a whole request without a body, in one call.
            request = conn.next_complete_request()
            if request is not None:
                budget -= 1
                # _answer, inlined for a bodiless request and a bytes response.
                self._request = request
                request.peer = self._peer
                handler = self._routes.get(request.path, _NO_ROUTE).get(request.method)
                try:
                    response = (self._app if handler is None else handler)(request)
                except Exception:
                    response = self._app_failed(request)
                if type(response.body) is not bytes:
                    self._start_stream(request, response)
                    if self._closed or transport.is_closing():
                        return
                    continue
                out.append(conn.respond(response, self._wall_clock()))
                if _ACCESS_LEVELS.get(_INFO, True) and access_log.isEnabledFor(_INFO):
                    self._log_access(request, response.status, len(response.body))
                self._restart = True
                if conn.our_state is _MUST_CLOSE:
                    self._close()
                    return
                if conn.drained:  # what the next call would say: NEED_DATA
                    drained = True
                    break
                continue
            try:
                event = conn.next_event()
            except HttpError as error:
                self._send_error(error)
                return
            kind = type(event)
            if event is END_OF_MESSAGE:
                request = self._request
                assert request is not None
                budget -= 1
                if self._answer(request, transport):
                    return
            elif kind is Request:
                self._request = event  # type: ignore[assignment]
                if event.expect_continue:  # type: ignore[union-attr]
                    out.append(conn.send_continue())
            elif kind is Data:
                self._body.append(event.data)  # type: ignore[union-attr]
            elif event is NEED_DATA:
                break
            elif event is CONNECTION_CLOSED:
                self._close()
                return
            else:  # PAUSED: the current response must end first
                break
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if drained:
            if self._reading_paused:
                self._reading_paused = False
                transport.resume_reading()
        elif conn.has_buffered_events:
            if not self._reading_paused:
                self._reading_paused = True
                transport.pause_reading()
        elif self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _continue_later(self) -> None:
        """The turn is used up: the rest of the pipeline in the next loop iteration."""
        if self._continuation is None:
            self._continuation = self._scheduler.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._continuation = None
        transport = self.transport
        if (self._closed or self._lingering or self._shutting or transport is None
                or transport.is_closing()):
            return
        if self._stream is None and not self._writing_paused:
            self._process()
            self._rearm()

    def _answer(self, request: Request, transport: Transport) -> bool:
        """Run the app on a complete request and start its response; True when the
        connection is closing (nothing more to process)."""
        self._request = request  # a streamed response and the access log refer to it
        body = self._body
        if body:
            request.body = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
        request.peer = self._peer
        try:
            response = self._app(request)
        except Exception:
            response = self._app_failed(request)
        conn = self._conn
        if type(response.body) is bytes:  # one bytes response: joined with its batch
            self._out.append(conn.respond(response, self._wall_clock()))
            # Off (the default): one dict hit in logging's own level cache, no call.
            if _ACCESS_LEVELS.get(_INFO, True) and access_log.isEnabledFor(_INFO):
                self._log_access(request, response.status, len(response.body))
            self._restart = True
            if conn.our_state is _MUST_CLOSE:
                self._close()
                return True
            return False
        self._start_stream(request, response)
        return self._closed or transport.is_closing()

    def _app_failed(self, request: Request) -> Response:
        log.exception("the application failed on %s %s from %s", request.method,
                      request.target.decode("latin-1"), self._peer)
        return INTERNAL_ERROR

    def _start_stream(self, request: Request, response: Response) -> None:
        conn = self._conn
        body = response.body
        try:
            self._out.append(conn.start_response(response, self._wall_clock()))
        except HttpUsageError:
            log.exception("cannot send the response of %r", request)
            self._abort()
            return
        self._source = body
        if not conn.sending_body:
            self._finish_stream()  # HEAD, 204, 304: the body is never read
            return
        self._flush()
        self._stream = iter(cast("Iterable[bytes]", body))
        self._pump()

    def _pump(self) -> None:
        """Send body chunks while the transport takes them."""
        stream = self._stream
        transport = self.transport
        assert stream is not None and transport is not None
        conn = self._conn
        while not self._writing_paused:
            try:
                chunk = next(stream)
            except StopIteration:
                break
            except Exception:
                log.exception("the response body of %r failed", self._request)
                self._abort()
                return
            try:
                transport.write(conn.send_body(chunk))
            except HttpUsageError:
                log.exception("the response body of %r is longer than announced",
                              self._request)
                self._abort()
                return
            if self._closed:
                return
        else:
            return  # paused: resume_writing continues
        self._finish_stream()

    def _finish_stream(self) -> None:
        request = self._request
        assert request is not None
        try:
            self._out.append(self._conn.end_response())
        except HttpUsageError as error:
            log.error("aborting %s: %s", self._peer, error)
            self._abort()
            return
        self._end_stream()
        if access_log.isEnabledFor(_INFO):
            self._log_access(request, -1, -1)
        self._response_ended()

    def _end_stream(self) -> None:
        self._stream = None
        source, self._source = self._source, None
        close = getattr(source, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing the response body %r failed", source)

    def _response_ended(self) -> None:
        self._restart = True
        if self._conn.must_close:
            self._close()

    def _flush(self) -> None:
        out = self._out
        if out:
            transport = self.transport
            assert transport is not None
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    # -- errors and closing ----------------------------------------------------------------

    def _close(self) -> None:
        """Close after what is buffered; abort if it is not taken within send_timeout."""
        transport = self.transport
        assert transport is not None
        self._flush()
        self._shutting = self._done = True
        transport.close()
        if not self._closed:  # the buffer must drain first
            self._unsent = transport.get_write_buffer_size()
            self._deadline = _NEVER
            self._set_deadline(self._scheduler.time() + self._config.send_timeout)

    def _send_error(self, error: HttpError) -> None:
        conn = self._conn
        log.debug("%s: %s %s", self._peer, error.status_hint, error.message)
        if conn.our_state is Ours.SEND_BODY or conn.our_state is Ours.MUST_CLOSE:
            self._abort()
            return
        self._out.append(conn.error_response(error, self._wall_clock()))
        if access_log.isEnabledFor(_INFO):
            access_log.info('%s "-" %d (%s)', self._peer_text(), error.status_hint,
                            error.message)
        self._flush()
        self._linger()

    def _linger(self) -> None:
        """Half-close after an error response; drain the client until it closes."""
        transport = self.transport
        assert transport is not None
        self._lingering = self._done = True
        # Whichever way it ends, the connection is dropped at the linger timeout: a
        # client that never reads the error response cannot hold it either.
        self._deadline = _NEVER
        self._set_deadline(self._scheduler.time() + self._config.linger_timeout)
        if self._eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _abort(self) -> None:
        self._end_stream()
        transport = self.transport
        if transport is not None:
            transport.abort()

    # -- timeouts --------------------------------------------------------------------------

    def _rearm(self) -> None:
        """Move the deadline to fit where the client is (see the module docstring)."""
        if self._done:
            return
        if self._stream is not None or self._writing_paused:
            # The client is the slow side: the send timeout armed by pause_writing runs.
            self._phase = _IDLE
            self._restart = True
            return
        phase = self._conn.their_phase
        if phase is _IDLE:
            if self._restart:
                # Inline _set_deadline: the keep-alive deadline only moves later, so the
                # timer is left alone (it re-arms itself when it fires early).
                deadline = self._time() + self._keepalive_timeout
                self._deadline = deadline
                if deadline < self._timer_when:
                    self._set_deadline(deadline)
        elif phase is _BODY:
            self._set_deadline(self._scheduler.time() + self._config.body_timeout)
        elif phase is _HEAD and (self._phase is not _HEAD or self._restart):
            self._set_deadline(self._scheduler.time() + self._config.header_timeout)
        self._phase = phase
        self._restart = False

    def _set_deadline(self, deadline: float) -> None:
        self._deadline = deadline
        if deadline < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_when = deadline
            self._timer = self._scheduler.call_later(
                max(0.0, deadline - self._scheduler.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = _NEVER
        if self._closed or self._deadline == _NEVER:
            return
        now = self._scheduler.time()
        if now < self._deadline:
            self._set_deadline(self._deadline)
            return
        transport = self.transport
        assert transport is not None
        if self._lingering:
            log.debug("%s: linger timeout; dropping the connection", self._peer)
            transport.abort()
            return
        if self._shutting or self._writing_paused:
            self._check_send_progress(transport)
            return
        phase = self._conn.their_phase
        if phase is _IDLE:
            log.debug("%s: idle timeout; closing", self._peer)
            self._close()
            return
        config = self._config
        timeout = config.header_timeout if phase is _HEAD else config.body_timeout
        self._send_error(RequestTimeoutError(
            f"the request {phase.value} did not arrive within {timeout:g} s"))

    def _arm_send_timeout(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self._unsent = transport.get_write_buffer_size()
        self._deadline = _NEVER
        self._set_deadline(self._scheduler.time() + self._config.send_timeout)

    def _check_send_progress(self, transport: Transport) -> None:
        """The send timeout expired: go on if the client took bytes since it was armed
        (we add none while writing is paused or closing), else give up on the client."""
        unsent = transport.get_write_buffer_size()
        if unsent and unsent >= self._unsent:
            log.debug("%s: send timeout: no byte taken in %g s (%d waiting); aborting",
                      self._peer, self._config.send_timeout, unsent)
            self._abort()
            return
        self._unsent = unsent
        self._set_deadline(self._scheduler.time() + self._config.send_timeout)

    # -- access log ------------------------------------------------------------------------

    def _peer_text(self) -> str:
        peer = self._peer
        return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)

    def _log_access(self, request: Request, status: int, size: int) -> None:
        if status < 0:  # a streamed response: report what was announced
            status, size = self._last_status()
        access_log.info('%s "%s %s HTTP/%s" %d %d', self._peer_text(), request.method,
                        request.target.decode("latin-1"), request.http_version, status, size)

    def _last_status(self) -> tuple[int, int]:
        response = self._conn.last_response
        if response is None:
            return 0, 0
        return response.status, response.content_length or 0


def http_protocol_factory(app: App, scheduler: Scheduler,
                          config: HttpConfig | None = None) -> ProtocolFactory:
    """A factory giving each connection an `HttpProtocol` serving `app`; `scheduler` (the
    loop) provides the timers."""
    return partial(HttpProtocol, app, scheduler, config or HttpConfig())
