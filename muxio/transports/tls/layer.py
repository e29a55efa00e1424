"""The TLS layer: a Protocol to an inner stream transport, a Transport to the handler.

    inner transport --data_received(records)--> TlsTransport --data_received(plain)--> handler
    inner transport <--write(records)---------- TlsTransport <--write(plain)---------- handler

Theory of operation
-------------------
Sans-I/O on `ssl.MemoryBIO`: bytes from the inner transport (TCP, KCP, an in-memory pair,
an asyncio transport: anything with the Transport API) are written to the incoming BIO;
OpenSSL (`SSLContext.wrap_bio`) decrypts them into plaintext for the handler and leaves
what it has to send (handshake messages, records, alerts) in the outgoing BIO, which is
handed to the inner transport's `write` at once. The layer owns no socket and no timer
wheel: it needs only a `Scheduler` (call_soon / call_later), so it runs on muxio's loop,
on a fake clock, or on any loop with those methods.

States: HANDSHAKING -> OPEN -> CLOSING -> CLOSED (CLOSED also straight from HANDSHAKING on
failure, and from anywhere on abort).

Handshake. Starts when the inner transport is made (a client sends its ClientHello then).
The handler's `connection_made` comes only once the handshake is done, as in asyncio: the
peer's certificate, the cipher and the ALPN choice are known there, and a client that
never completes a handshake costs no handler state (a server creates its handler from the
factory only then). A handshake that fails (refused certificate, a peer that does not
speak TLS, nothing in common) or does not finish within `handshake_timeout` ends with a
`TlsHandshakeError` saying why, given to `on_handshake` (the server logs it, `connect`'s
future raises it); the handler never saw the connection, so it is not told. The alert
that says why is sent before the inner transport is closed; on timeout it is aborted.

Reading. Records are decrypted only while the handler reads: `pause_reading` pauses the
inner transport too, and records already received stay encrypted in the incoming BIO
until `resume_reading`. All records of one inner `data_received` are decrypted in one
pass and handed over as one `data_received`. The pass stops when the incoming BIO is
empty instead of asking OpenSSL once more and catching SSLWantReadError: an exception per
read costs more than the record. The peer's close_notify, or the inner transport's EOF
without one (a truncation, which many HTTP clients do), is the handler's `eof_received`;
if it returns a true value we may go on writing (the peer closed its side only), else the
layer closes (after a truncation without sending close_notify, as asyncio does: the peer
has left the TLS session).

Writing. `write` encrypts at once (`SSLObject.write` on a memory BIO takes everything)
and writes the records to the inner transport, which sends or buffers them. So the bytes
not yet sent are the inner transport's buffer, and that is what `get_write_buffer_size`
reports and what the water marks are checked against: the inner transport's
`pause_writing` / `resume_writing` become the handler's, and the handler's water marks
are set on the inner transport too. No plaintext is ever held back: nothing can be
written before the handshake (the handler has no transport yet), and with renegotiation
refused a write never has to wait for a handshake.

Closing. `close()` stops delivering data, sends close_notify after the data already
written, and waits for the peer's close_notify (or its EOF), at most `close_timeout`
seconds; then the inner transport is closed (or aborted on timeout). A handler that
paused reading and closes still hears the peer's answer (close resumes the inner reading).
Waiting matters: closing a TCP socket with unread bytes from the peer makes the kernel
send a reset, which can destroy our last response before the peer reads it. `abort()`
closes the inner transport at once, without close_notify. `write_eof()` raises
TlsHalfCloseError: the handler cannot close only its write side over TLS here
(`can_write_eof()` is False, and muxio's handlers check it). The handler's
`connection_lost` comes when the inner transport is lost, exactly once, after its last
`data_received`.

Renegotiation is refused (`OP_NO_RENEGOTIATION` is set on the context); TLS 1.3 has none.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from muxio.errors import TlsHalfCloseError, TlsHandshakeError
from muxio.protocols import Cancellable, Protocol, ProtocolFactory, Scheduler, Transport
from muxio.transports.flow import water_marks
from muxio.transports.lifecycle import TransportLifecycle
from muxio.transports.tls.context import harden, server_name

log = logging.getLogger("muxio.tls")

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a peer has to complete the handshake (asyncio's ssl_handshake_timeout is 60 s;
a bad or slow client holds a session and its OpenSSL state until then)."""
DEFAULT_CLOSE_TIMEOUT = 10.0
"""Seconds to wait for the peer's close_notify after ours."""
READ_SIZE = 16 * 1024
"""Bytes asked of SSLObject.read: one record's worth (TLS records carry at most 16 KiB of
plaintext, and one read returns at most one record), so no larger buffer is allocated
only to be shrunk."""

HANDSHAKING, OPEN, CLOSING, CLOSED = "handshaking", "open", "closing", "closed"

HandshakeCallback = Callable[["TlsTransport", "TlsHandshakeError | None"], None]
LostCallback = Callable[["TlsTransport"], None]

_REASON_HINTS = {
    "HTTP_REQUEST": "plain HTTP sent to a TLS port?",
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS, or only an old version",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common",
    "NO_SHARED_CIPHER": "no cipher in common",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "this server requires a client certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate's CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
}


class _Unconnected(Protocol):
    """Stands for the handler until it exists (a server creates it after the handshake)."""


_UNCONNECTED = _Unconnected()


def describe_ssl_error(exc: BaseException) -> str:
    """A short reason for a failed handshake, with a hint when the cause is a usual one."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLEOFError):
        return "the peer closed the connection during the handshake"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        text = exc.reason.lower().replace("_", " ")
        hint = _REASON_HINTS.get(exc.reason)
        return f"{text} ({hint})" if hint else text
    return str(exc) or type(exc).__name__


class TlsTransport(TransportLifecycle, Protocol):
    """TLS over any stream transport: give it to the inner transport as its protocol.

    Server side: `TlsTransport(context, scheduler, server_side=True, app_factory=F)`; F()
    makes the handler once the handshake is done. Client side: `TlsTransport(context,
    scheduler, server_side=False, app_protocol=P, server_hostname="example.org")`.
    `muxio.transports.tls.serve` / `connect` do this for you over TCP or KCP.
    """

    __slots__ = (
        "_context", "_server_side", "_app_factory", "_incoming", "_outgoing",
        "_sslobj", "_inner", "_phase", "_reading", "_inner_eof", "_eof_delivered",
        "_peer_closed", "_app_made", "_handshake_timeout", "_close_timeout",
        "_timer", "_on_handshake", "_on_lost", "_handshake_error", "_write_after_close",
        "_error", "_closed_locally", "_read", "_write", "_truncated")

    _protocol: Protocol

    def __init__(self, context: ssl.SSLContext, scheduler: Scheduler, *, server_side: bool,
                 app_protocol: Protocol | None = None,
                 app_factory: ProtocolFactory | None = None,
                 server_hostname: str | None = None,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
                 on_handshake: HandshakeCallback | None = None,
                 on_lost: LostCallback | None = None) -> None:
        if (app_protocol is None) == (app_factory is None):
            raise ValueError("give exactly one of app_protocol and app_factory")
        if not handshake_timeout > 0 or not close_timeout > 0:
            raise ValueError(f"handshake_timeout ({handshake_timeout}) and close_timeout "
                             f"({close_timeout}) must be > 0 seconds")
        harden(context)
        self._init_lifecycle(scheduler, app_protocol or _UNCONNECTED,
                             {"transport": "tls", "peername": None})
        self._context = context
        self._server_side = server_side
        self._app_factory = app_factory
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj = context.wrap_bio(self._incoming, self._outgoing,
                                        server_side=server_side,
                                        server_hostname=None if server_side else
                                        server_hostname)
        # The hot path calls the C methods under SSLObject's Python wrappers (what the
        # wrappers add is an argument check): about a microsecond per record.
        engine = getattr(self._sslobj, "_sslobj", self._sslobj)
        self._read: Callable[[int], bytes] = engine.read
        self._write: Callable[[bytes | bytearray | memoryview], int] = engine.write
        self._inner: Transport | None = None
        self._phase = HANDSHAKING
        self._high_water, self._low_water = water_marks(None, None)
        self._writing_paused = False
        self._reading = True
        self._inner_eof = False  # the inner transport's EOF arrived
        self._eof_delivered = False  # the handler's eof_received was called
        self._peer_closed = False  # the peer's close_notify was read
        self._app_made = False
        self._error: Exception | None = None  # a fatal TLS error: no close_notify any more
        self._closed_locally = False  # close()/abort() before the handshake finished
        self._truncated = False  # the peer's EOF came without close_notify and we close
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout
        self._timer: Cancellable | None = None
        self._on_handshake = on_handshake
        self._on_lost = on_lost
        self._handshake_error: TlsHandshakeError | None = None
        self._write_after_close = 0

    # == the inner transport's protocol ==================================================

    def connection_made(self, transport: Transport) -> None:
        """The inner transport is up: start the handshake (a client speaks first)."""
        self._inner = transport
        self._extra["peername"] = transport.get_extra_info("peername")
        self._extra["transport"] = _transport_name(self)
        self._timer = self._scheduler.call_later(self._handshake_timeout,
                                                 self._handshake_timed_out)
        self._do_handshake()

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        state = self._phase
        if state is OPEN:
            if self._reading:
                self._read_records()
        elif state is HANDSHAKING:
            self._do_handshake()
        elif state is CLOSING:
            self._continue_shutdown()

    def eof_received(self) -> bool:
        """The inner transport's EOF. We close the inner transport ourselves (after a
        close_notify when possible), so it is always told to stay open.

        The EOF is not written to the incoming BIO: OpenSSL 3 takes an EOF without
        close_notify for a fatal error and would refuse our writes from then on, while
        the handler may still want to answer (a truncation is how many HTTP clients
        close). The layer knows the EOF and tells the handler itself."""
        self._inner_eof = True
        state = self._phase
        if state is HANDSHAKING:
            self._handshake_failed("the peer closed the connection during the handshake",
                                   None, then="close")
        elif state is OPEN:
            if self._reading:
                self._read_records()  # what is left, then EOF (close_notify or truncation)
        elif state is CLOSING:
            self._finish_close()  # the peer can no longer answer our close_notify
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """The inner transport is gone: the end for the handler too."""
        self._cancel_timer()
        if self._phase is HANDSHAKING:
            reason = (f"the connection was lost during the handshake ({exc})" if exc else
                      "the peer closed the connection during the handshake")
            self._handshake_failed(reason, exc, then=None)
        self._phase = CLOSED
        self._reading = False
        if self._app_made:
            self._lose(exc or self._error)  # the handler's connection_lost, then _release
        else:
            self._lost = True  # no handler was ever told of this connection
            self._release()

    def pause_writing(self) -> None:
        """The inner transport's buffer is over its high-water mark."""
        if self._app_made:
            self._maybe_pause()

    def resume_writing(self) -> None:
        if self._app_made:
            self._maybe_resume()

    # -- handshake -----------------------------------------------------------------------

    def _do_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._error = exc
            self._flush()  # the alert tells the peer why
            self._handshake_failed(describe_ssl_error(exc), exc, then="close")
            return
        self._handshake_done()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._phase is HANDSHAKING:
            self._handshake_failed(f"not completed within {self._handshake_timeout:g} s "
                                   f"(handshake timeout)", None, then="abort")

    def _handshake_failed(self, reason: str, cause: BaseException | None, *,
                          then: str | None) -> None:
        """Report the failure; then "close" the inner transport (after the alert already
        written), "abort" it, or nothing (None: it is already lost)."""
        if self._phase is not HANDSHAKING:
            return
        self._phase = CLOSED
        self._reading = False
        self._cancel_timer()
        peer = self._peer()
        error = TlsHandshakeError(f"TLS handshake with {peer} failed: {reason}",
                                  reason=reason, peer=peer)
        error.__cause__ = cause
        self._handshake_error = error
        inner = self._inner
        if inner is not None and then == "close":
            inner.close()
        elif inner is not None and then == "abort":
            inner.abort()
        if self._on_handshake is not None:
            self._on_handshake(self, error)

    def _handshake_done(self) -> None:
        if self._phase is not HANDSHAKING:
            return  # already done: an inner transport that delivered our flush at once
        self._cancel_timer()
        self._phase = OPEN
        # Our last handshake message goes out only now that we are OPEN: an inner
        # transport that delivers synchronously may bring the peer's answer right back.
        self._flush()
        if self._app_factory is not None:
            try:
                self._protocol = self._app_factory()
            except Exception as exc:
                log.error("the protocol factory raised; aborting the TLS connection from %s",
                          self._peer(), exc_info=exc)
                self._abort(exc)
                return
        self._app_made = True
        if self._on_handshake is not None:
            self._on_handshake(self, None)
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")
            return
        if self._phase is not OPEN:
            return  # the handler closed at once
        inner = self._inner
        if inner is not None and inner.get_write_buffer_size() > self._high_water:
            self._maybe_pause()
        if self._reading and (self._incoming.pending or self._inner_eof):
            # The peer's first records came with its last handshake message.
            self._read_records()

    # -- reading -------------------------------------------------------------------------

    def _read_records(self) -> None:
        """Decrypt every complete record in the incoming BIO; one data_received."""
        incoming = self._incoming
        read = self._read
        data = b""
        more: list[bytes] | None = None
        ended = False
        while True:
            try:
                piece = read(READ_SIZE)
            except ssl.SSLWantReadError:
                if self._inner_eof:
                    ended = True  # the inner transport's EOF without close_notify
                    log.debug("%s closed the connection without close_notify",
                              self._peer())
                break
            except ssl.SSLError as exc:
                self._deliver(data, more)
                self._fatal_error(exc)
                return
            if not piece:
                ended = True  # close_notify
                self._peer_closed = True
                break
            if not data:
                data = piece
            elif more is None:
                more = [data, piece]
            else:
                more.append(piece)
            if not incoming.pending and not self._inner_eof:
                break  # nothing left to decrypt: no need to provoke SSLWantReadError
        if data:
            self._deliver(data, more)
        if self._outgoing.pending:
            self._flush()  # e.g. a KeyUpdate answered while reading
        if ended:
            self._peer_finished()

    def _deliver(self, data: bytes, more: list[bytes] | None) -> None:
        if not data or self._phase is not OPEN:
            return
        try:
            self._protocol.data_received(data if more is None else b"".join(more))
        except Exception as exc:
            self._protocol_failed(exc, "data_received")

    def _peer_finished(self) -> None:
        """The peer will send no more: the handler's eof_received decides what follows."""
        if self._eof_delivered or self._phase is not OPEN:
            return
        self._eof_delivered = True
        self._reading = False
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._protocol_failed(exc, "eof_received")
            return
        if not keep_open:
            # A peer that ended without close_notify gets none either, as from asyncio:
            # OpenSSL counts its EOF as an error, and the peer reads no TLS any more.
            self._truncated = not self._peer_closed
            self.close()

    # == the handler's transport =========================================================

    def pause_reading(self) -> None:
        if self._reading and self._phase is OPEN:
            self._reading = False
            if self._inner is not None:
                self._inner.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading and self._phase is OPEN and not self._eof_delivered:
            self._reading = True
            if self._inner is not None:
                self._inner.resume_reading()
            if self._incoming.pending or self._inner_eof or self._sslobj.pending():
                self._scheduler.call_soon(self._resume_delivery)

    def _resume_delivery(self) -> None:
        if self._reading and self._phase is OPEN:
            self._read_records()

    def is_reading(self) -> bool:
        return self._reading and self._phase is OPEN

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._phase is not OPEN:
            self._write_refused()
            return
        if not data:
            return
        try:
            self._write(data)
        except ssl.SSLError as exc:
            self._fatal_error(exc)
            return
        self._inner.write(self._outgoing.read())  # type: ignore[union-attr]

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(chunks))

    def _write_refused(self) -> None:
        if self._phase is HANDSHAKING:
            raise RuntimeError("write() before the TLS handshake finished: wait for "
                               "connection_made")
        self._write_after_close += 1
        if self._write_after_close == 1:
            log.debug("write() on a closing TLS transport to %s ignored", self._peer())

    def write_eof(self) -> None:
        raise TlsHalfCloseError(
            "TLS cannot shut down only the write side here: call close() when done "
            "writing (it sends close_notify); can_write_eof() is False on TLS transports")

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        """Encrypted bytes not yet sent: the inner transport's buffer (plus any record
        not yet handed to it, which is none between calls)."""
        inner = self._inner
        pending = self._outgoing.pending
        return pending + inner.get_write_buffer_size() if inner is not None else pending

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water, self._low_water = water_marks(high, low)
        if self._inner is not None:
            # The inner transport's marks drive its pause/resume calls, which become ours.
            self._inner.set_write_buffer_limits(self._high_water, self._low_water)
        if self._app_made:
            self._maybe_pause()

    # -- closing -------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._phase is not OPEN

    def close(self) -> None:
        state = self._phase
        if state is HANDSHAKING:
            self._closed_locally = True
            self._handshake_failed("closed locally before the handshake finished", None,
                                   then="close")
            return
        if state is not OPEN:
            return
        self._phase = CLOSING
        self._reading = False
        inner = self._inner
        if inner is not None and not self._inner_eof and not inner.is_reading():
            # The handler paused reading: the peer's close_notify must still reach us,
            # or the close would wait for its timeout.
            inner.resume_reading()
        self._timer = self._scheduler.call_later(self._close_timeout, self._close_timed_out)
        self._continue_shutdown()

    def _continue_shutdown(self) -> None:
        """Send close_notify (once) and wait for the peer's; its data is dropped."""
        sslobj = self._sslobj
        if self._error is not None or self._truncated:
            self._finish_close()
            return
        if not self._peer_closed and self._incoming.pending:
            try:
                while sslobj.read(READ_SIZE):
                    pass  # the handler closed: what the peer still sends is dropped
                self._peer_closed = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                self._peer_closed = True
            except ssl.SSLError as exc:
                log.debug("TLS error from %s while closing: %s", self._peer(), exc)
                self._finish_close()
                return
        try:
            sslobj.unwrap()
        except ssl.SSLWantReadError:
            self._flush()  # our close_notify, after the data already written
            if self._inner_eof:
                self._finish_close()
            return
        except ssl.SSLError as exc:
            log.debug("TLS shutdown with %s: %s", self._peer(), exc)
            self._flush()
            self._finish_close()
            return
        self._flush()
        self._finish_close()

    def _close_timed_out(self) -> None:
        self._timer = None
        if self._phase is CLOSING:
            log.debug("%s did not answer close_notify within %g s: aborting", self._peer(),
                      self._close_timeout)
            self._phase = CLOSED
            if self._inner is not None:
                self._inner.abort()

    def _finish_close(self) -> None:
        if self._phase is CLOSED:
            return
        self._phase = CLOSED
        self._cancel_timer()
        if self._inner is not None:
            self._inner.close()  # sends what is buffered (our close_notify) first

    def _abort(self, exc: Exception | None) -> None:
        """abort(), or a handler's exception: the inner transport is aborted at once (no
        close_notify) and the handler's connection_lost(exc) follows."""
        if self._phase is HANDSHAKING:
            self._closed_locally = True
            self._handshake_failed("aborted locally before the handshake finished", None,
                                   then="abort")
            return
        self._phase = CLOSED
        self._reading = False
        self._cancel_timer()
        if self._inner is not None:
            self._inner.abort()
        if self._app_made:
            self._lose(exc)

    def _release(self) -> None:
        """After the handler's connection_lost: let go of the inner transport and the
        handler. Both point back at us (as protocol, as transport), and a cycle is freed
        only by the cyclic GC, late and in batches; each session holds OpenSSL's buffers,
        so the session is freed by reference counting instead, at once."""
        self._cancel_timer()
        if self._on_lost is not None:
            on_lost, self._on_lost = self._on_lost, None
            on_lost(self)
        if self._app_made:
            self._protocol = _UNCONNECTED
        self._inner = None

    def _fatal_error(self, exc: Exception) -> None:
        """OpenSSL gave up on the session (e.g. a bad record MAC): abort the connection."""
        log.info("TLS session with %s failed: %s", self._peer(), describe_ssl_error(exc))
        self._error = exc
        self._flush()  # the alert
        self._phase = CLOSED
        self._reading = False
        self._cancel_timer()
        if self._inner is not None:
            self._inner.close()

    # -- helpers -------------------------------------------------------------------------

    def _flush(self) -> None:
        outgoing = self._outgoing
        if outgoing.pending and self._inner is not None:
            self._inner.write(outgoing.read())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _peer(self) -> Any:
        return self._extra["peername"]

    # -- info ----------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's TLS names ('ssl_object', 'sslcontext', 'peercert', 'cipher',
        'compression'), plus 'alpn_protocol', 'server_name' (the SNI) and 'transport'
        ('tls+tcp', 'tls+kcp'...); anything else comes from the inner transport."""
        getter = _TLS_INFO.get(name)
        if getter is not None:
            value = getter(self)
            return default if value is None else value
        if self._inner is None:
            return self._extra.get(name, default)  # released: what was kept
        return self._inner.get_extra_info(name, default)

    @property
    def handshake_error(self) -> TlsHandshakeError | None:
        """Why the handshake failed (None while it runs, and once it succeeded)."""
        return self._handshake_error

    @property
    def closed_locally(self) -> bool:
        """True if close()/abort() ended the handshake (not the peer, not a timeout)."""
        return self._closed_locally

    @property
    def state(self) -> str:
        """'handshaking', 'open', 'closing' or 'closed'."""
        return self._phase

    def __repr__(self) -> str:
        side = "server" if self._server_side else "client"
        return f"<TlsTransport {side} {self._peer()} {self._phase}>"


def _peercert(layer: TlsTransport) -> Any:
    if layer._phase is HANDSHAKING:
        return None
    try:
        return layer._sslobj.getpeercert()
    except ValueError:
        return None


def _server_name(layer: TlsTransport) -> str | None:
    sslobj = layer._sslobj
    return server_name(sslobj) if layer._server_side else sslobj.server_hostname


def _transport_name(layer: TlsTransport) -> str:
    inner = layer._inner
    name = inner.get_extra_info("transport") if inner is not None else None
    return f"tls+{name}" if name else "tls"


_TLS_INFO: dict[str, Callable[[TlsTransport], Any]] = {
    "ssl_object": lambda layer: layer._sslobj,
    "sslcontext": lambda layer: layer._context,
    "peercert": _peercert,
    "cipher": lambda layer: layer._sslobj.cipher(),
    "compression": lambda layer: layer._sslobj.compression(),
    "alpn_protocol": lambda layer: layer._sslobj.selected_alpn_protocol(),
    "server_name": _server_name,
    "transport": lambda layer: layer._extra["transport"],
}
