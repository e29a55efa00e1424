"""The TLS layer on the in-memory link and a fake clock: handshake, failures and their
reasons, timeouts, close_notify, abort, half-close refusal, flow control both ways."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator

import pytest

from muxio.errors import TlsHalfCloseError, TlsHandshakeError
from muxio.loop import Loop
from muxio.protocols import Protocol
from muxio.testing import FakeClock
from muxio.testing.conformance import RecordingProtocol
from muxio.testing.memory import memory_pair
from muxio.transports.tls import TlsTransport, client_context, harden
from tests.tls.harness import DEADLINE, Pki, tls_memory_pair


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop(clock=FakeClock()) as fake_time_loop:
        yield fake_time_loop


def client_hello(pki: Pki) -> bytes:
    """The first flight of a real TLS client."""
    outgoing = ssl.MemoryBIO()
    sslobj = pki.client_context().wrap_bio(ssl.MemoryBIO(), outgoing,
                                           server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        sslobj.do_handshake()
    return outgoing.read()


def test_handler_sees_the_connection_only_after_the_handshake(loop: Loop, pki: Pki) -> None:
    pair = tls_memory_pair(loop, pki.client_context(alpn=("x-other", "http/1.1")),
                           pki.server_context(alpn=("http/1.1",)))
    assert pair.client.events == [] and pair.servers == []
    assert pair.client_tls.state == "handshaking"
    assert pair.client_tls.get_extra_info("peercert") is None
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    client, server = pair.client_tls, pair.server_tls
    assert pair.client.events == ["made"] and pair.server.events == ["made"]
    assert pair.client.transport is client and pair.server.transport is server
    for transport in (client, server):
        assert transport.state == "open"
        assert transport.get_extra_info("alpn_protocol") == "http/1.1"
        assert transport.get_extra_info("ssl_object").version() == "TLSv1.3"
        _name, version, bits = transport.get_extra_info("cipher")
        assert version == "TLSv1.3" and bits >= 128
        assert transport.get_extra_info("compression") is None
        assert transport.get_extra_info("transport") == "tls+memory"
        assert isinstance(transport.get_extra_info("sslcontext"), ssl.SSLContext)
        assert transport.get_extra_info("server_name") == "localhost"
        assert transport.get_extra_info("no such key", "dflt") == "dflt"
        assert not transport.can_write_eof()
    assert client.get_extra_info("peername") == "server"  # from the inner transport
    assert ("DNS", "localhost") in client.get_extra_info("peercert")["subjectAltName"]
    assert server.get_extra_info("peercert") is None  # no client certificate asked for
    assert server.handshake_error is None


def test_bytes_both_ways_then_close_notify(loop: Loop, pki: Pki) -> None:
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context())
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    pair.client_tls.write(b"ping " * 10_000)
    pair.client_tls.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
    pair.run_until(lambda: len(pair.server.received) == 50_003)
    assert bytes(pair.server.received) == b"ping " * 10_000 + b"abc"
    pair.server_tls.write(b"pong")
    pair.run_until(lambda: pair.client.received == b"pong")
    pair.client_tls.close()
    assert pair.client_tls.is_closing() and not pair.client_tls.is_reading()
    pair.client_tls.write(b"ignored after close")
    pair.run_until(lambda: pair.client.lost and pair.server.lost)
    # The server's handler saw close_notify as EOF and closed (RecordingProtocol returns
    # False from eof_received); each side's handler was told exactly once, cleanly.
    assert pair.server.events == ["made", "data", "eof", "lost"]
    assert pair.client.events == ["made", "data", "lost"]
    assert pair.client.lost_with == [None] and pair.server.lost_with == [None]
    assert bytes(pair.server.received).endswith(b"abc")


def test_close_waits_for_the_peers_close_notify_at_most_close_timeout(loop: Loop,
                                                                      pki: Pki) -> None:
    """A peer whose handler keeps the connection open after EOF never answers our
    close_notify: we give up at close_timeout (fake clock) and abort."""
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context(),
                           keep_open_on_eof=True, close_timeout=7.0)
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    started = loop.time()
    pair.client_tls.close()
    pair.run_until(lambda: "eof" in pair.server.events)
    assert pair.client_tls.state == "closing" and not pair.client.lost
    pair.run_until(lambda: pair.client.lost)
    assert loop.time() - started >= 7.0
    assert pair.client.lost_with == [None]
    pair.run_until(lambda: pair.server.lost)  # the abort reached the peer
    assert isinstance(pair.server.lost_with[0], ConnectionResetError)


def test_abort_sends_no_close_notify(loop: Loop, pki: Pki) -> None:
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context())
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    pair.client_tls.write(b"dropped or not, never followed by close_notify")
    pair.client_tls.abort()
    pair.client_tls.abort()
    pair.run_until(lambda: pair.client.lost and pair.server.lost)
    assert "eof" not in pair.server.events
    assert pair.client.lost_with == [None]
    assert isinstance(pair.server.lost_with[0], ConnectionResetError)


def test_write_eof_is_refused_clearly(loop: Loop, pki: Pki) -> None:
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context())
    pair.run_until(lambda: bool(pair.client.events))
    assert not pair.client_tls.can_write_eof()
    with pytest.raises(TlsHalfCloseError, match=r"call close\(\)"):
        pair.client_tls.write_eof()
    with pytest.raises(NotImplementedError):  # as asyncio's TLS transport raises
        pair.client_tls.write_eof()
    pair.client_tls.write(b"still open")
    pair.run_until(lambda: bool(pair.servers) and pair.server.received == b"still open")


def test_eof_without_close_notify_is_eof_and_the_handler_may_still_write(loop: Loop,
                                                                         pki: Pki) -> None:
    """The inner transport's EOF without close_notify (a truncation, as many HTTP clients
    close) reaches the handler as eof_received; if it keeps the connection open, its
    replies still go out."""
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context(),
                           keep_open_on_eof=True)
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    pair.client_tls.write(b"request")
    pair.client_link.write_eof()  # beneath TLS: no close_notify
    pair.run_until(lambda: "eof" in pair.server.events)
    assert bytes(pair.server.received) == b"request"
    pair.server_tls.write(b"reply after the peer's EOF")
    pair.server_tls.close()
    pair.run_until(lambda: pair.server.lost and pair.client.received ==
                   b"reply after the peer's EOF")
    assert pair.server.lost_with == [None]


def test_handshake_timeout_on_the_fake_clock(loop: Loop, pki: Pki) -> None:
    """A client that stops mid-handshake is closed at the handshake timeout; no handler
    is ever made for it."""
    made: list[Protocol] = []
    failures: list[TlsHandshakeError | None] = []
    server = TlsTransport(pki.server_context(), loop, server_side=True,
                          app_factory=lambda: made.append(Protocol()) or made[-1],
                          handshake_timeout=4.5,
                          on_handshake=lambda layer, error: failures.append(error))
    stalled = RecordingProtocol()
    stalled_link, _ = memory_pair(loop, stalled, server)
    hello = client_hello(pki)
    stalled_link.write(hello[: len(hello) // 2])
    started = loop.time()
    loop.run_until(lambda: stalled.lost, timeout=DEADLINE)
    assert loop.time() - started >= 4.5
    assert made == [] and server.state == "closed"
    error = server.handshake_error
    assert error is not None and failures == [error]
    assert "handshake timeout" in error.reason and "4.5 s" in str(error)
    assert isinstance(stalled.lost_with[0], ConnectionResetError)  # aborted, no alert


def test_plain_http_to_the_tls_side_fails_with_a_reason(loop: Loop, pki: Pki) -> None:
    server = TlsTransport(pki.server_context(), loop, server_side=True,
                          app_factory=RecordingProtocol)
    raw = RecordingProtocol()
    raw_link, _ = memory_pair(loop, raw, server)
    raw_link.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    loop.run_until(lambda: raw.lost, timeout=DEADLINE)
    error = server.handshake_error
    assert error is not None
    assert error.reason == "http request (plain HTTP sent to a TLS port?)"
    assert isinstance(error.__cause__, ssl.SSLError)
    assert str(error).startswith("TLS handshake with client failed: http request")
    assert raw.events[-2:] == ["eof", "lost"]  # closed after the alert, not reset


def test_untrusted_server_certificate(loop: Loop, pki: Pki) -> None:
    wrong_trust = client_context(cafile=str(pki.rogue_ca))
    pair = tls_memory_pair(loop, wrong_trust, pki.server_context())
    pair.run_until(lambda: pair.client_tls.state == "closed"
                   and pair.server_tls.state == "closed")
    client_error, server_error = pair.client_tls.handshake_error, pair.server_tls.handshake_error
    assert client_error is not None and server_error is not None
    assert client_error.reason.startswith("certificate verify failed: unable to get local "
                                          "issuer certificate")
    assert "unknown ca" in server_error.reason
    assert pair.client.events == [] and pair.servers == []


def test_wrong_host_name(loop: Loop, pki: Pki) -> None:
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context(),
                           server_hostname="elsewhere.example")
    pair.run_until(lambda: pair.client_tls.state == "closed")
    error = pair.client_tls.handshake_error
    assert error is not None and "Hostname mismatch" in error.reason


@pytest.mark.parametrize("client", ["none", "rogue", "good"])
def test_client_certificates_must_be_signed_by_the_servers_ca(loop: Loop, pki: Pki,
                                                              client: str) -> None:
    context = pki.client_context(cert=client == "good", rogue=client == "rogue")
    pair = tls_memory_pair(loop, context, pki.server_context(client_ca=True))
    if client == "good":
        pair.run_until(lambda: bool(pair.servers))
        subject = dict(item[0] for item in
                       pair.server_tls.get_extra_info("peercert")["subject"])
        assert subject["commonName"] == "muxio test client"
        return
    pair.run_until(lambda: pair.server_tls.state == "closed")
    error = pair.server_tls.handshake_error
    assert error is not None and pair.servers == []
    if client == "none":
        assert "peer did not return a certificate" in error.reason
    else:
        assert error.reason.startswith("certificate verify failed")
    # TLS 1.3: the client finishes its side before the server checks its certificate, so
    # its handler may have been connected; either way it ends with the server's alert.
    pair.run_until(lambda: pair.client_tls.state == "closed")
    if pair.client.events:
        pair.run_until(lambda: pair.client.lost)
        assert isinstance(pair.client.lost_with[0], ssl.SSLError)
    else:
        assert pair.client_tls.handshake_error is not None


def test_pause_reading_stops_decrypting_and_pauses_the_link(loop: Loop, pki: Pki) -> None:
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context())
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    pair.server_tls.pause_reading()
    assert not pair.server_tls.is_reading() and not pair.server_link.is_reading()
    pair.client_tls.write(b"x" * 100_000)
    for _ in range(20):
        loop.run_once(0)
    assert pair.server.received == b""
    # The records wait, encrypted, in the link: they count in the client's buffer.
    assert pair.client_tls.get_write_buffer_size() > 100_000
    pair.server_tls.resume_reading()
    pair.run_until(lambda: len(pair.server.received) == 100_000)
    pair.run_until(lambda: pair.client_tls.get_write_buffer_size() == 0)


def test_write_buffer_counts_encrypted_bytes_and_drives_pause(loop: Loop, pki: Pki) -> None:
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context())
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    pair.client_tls.set_write_buffer_limits(high=40_000)
    assert pair.client_tls.get_write_buffer_limits() == (10_000, 40_000)
    assert pair.client_link.get_write_buffer_limits() == (10_000, 40_000)
    pair.server_tls.pause_reading()
    pair.client_tls.write(b"y" * 30_000)
    assert not pair.client.writing_paused
    encrypted = pair.client_tls.get_write_buffer_size()
    assert encrypted == pair.client_link.get_write_buffer_size() > 30_000
    pair.client_tls.write(b"y" * 30_000)
    assert pair.client.writing_paused and pair.client.pauses == 1
    pair.server_tls.resume_reading()
    pair.run_until(lambda: not pair.client.writing_paused)
    assert pair.client.events.count("pause") == pair.client.events.count("resume") == 1
    pair.run_until(lambda: len(pair.server.received) == 60_000)


def test_handler_errors_abort_only_that_connection(loop: Loop, pki: Pki,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RecordingProtocol):
        def data_received(self, data: bytes) -> None:
            raise RuntimeError("handler bug")

    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context(),
                           server_factory=Broken)
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    with caplog.at_level(logging.ERROR, logger="muxio.tls"):
        pair.client_tls.write(b"boom")
        pair.run_until(lambda: pair.client.lost and pair.server.lost)
    assert "Broken.data_received raised" in caplog.text
    assert isinstance(pair.client.lost_with[0], ConnectionResetError)


def test_renegotiation_is_refused_on_every_context() -> None:
    """A context the user built is hardened when a TLS transport uses it."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    assert not context.options & ssl.OP_NO_RENEGOTIATION
    with Loop() as loop:
        TlsTransport(context, loop, server_side=False, app_protocol=Protocol(),
                     server_hostname="localhost")
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert harden(context) is context


def test_constructor_checks_its_arguments(pki: Pki) -> None:
    with Loop() as loop:
        with pytest.raises(ValueError, match="exactly one"):
            TlsTransport(pki.client_context(), loop, server_side=False)
        with pytest.raises(ValueError, match="must be > 0"):
            TlsTransport(pki.server_context(), loop, server_side=True,
                         app_factory=Protocol, handshake_timeout=0)


def test_writing_before_the_handshake_is_an_error(loop: Loop, pki: Pki) -> None:
    """Nothing can write before connection_made; a caller holding the layer itself
    learns why."""
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context())
    with pytest.raises(RuntimeError, match="before the TLS handshake finished"):
        pair.client_tls.write(b"too early")


def test_a_failing_protocol_factory_aborts_that_connection(
        loop: Loop, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    def factory() -> Protocol:
        raise RuntimeError("factory bug")

    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context(),
                           server_factory=factory)
    with caplog.at_level(logging.ERROR, logger="muxio.tls"):
        pair.run_until(lambda: pair.client.lost)
    assert "the protocol factory raised" in caplog.text
    assert isinstance(pair.client.lost_with[0], ConnectionResetError)


class SynchronousLink:
    """An inner transport that hands each write to the peer at once (inside write): the
    harshest re-entrancy an inner transport can inflict on the layer."""

    def __init__(self) -> None:
        self.peer: TlsTransport | None = None

    def write(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.data_received(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"transport": "sync", "peername": "peer"}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def test_a_synchronous_inner_transport_makes_each_handler_once(loop: Loop, pki: Pki) -> None:
    """Our last handshake message, delivered at once, brings the peer's tickets back into
    the layer before _do_handshake returns: connection_made must still come once."""
    client, server = RecordingProtocol(), RecordingProtocol()
    client_tls = TlsTransport(pki.client_context(), loop, server_side=False,
                              app_protocol=client, server_hostname="localhost")
    server_tls = TlsTransport(pki.server_context(), loop, server_side=True,
                              app_factory=lambda: server)
    to_server, to_client = SynchronousLink(), SynchronousLink()
    to_server.peer, to_client.peer = server_tls, client_tls
    server_tls.connection_made(to_client)  # type: ignore[arg-type]
    client_tls.connection_made(to_server)  # type: ignore[arg-type]
    assert client.events == ["made"] and server.events == ["made"]
    client_tls.write(b"ping")
    assert server.received == b"ping"
    assert client_tls.get_extra_info("transport") == "tls+sync"


def test_close_while_paused_still_reads_the_peers_close_notify(loop: Loop, pki: Pki) -> None:
    """A handler that paused reading and then closes: the layer reads again for the peer's
    close_notify, so the close ends when the peer answers, not at the close timeout."""
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context(),
                           close_timeout=30.0)
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    pair.client_tls.pause_reading()
    started = loop.time()
    pair.client_tls.close()
    pair.run_until(lambda: pair.client.lost and pair.server.lost)
    assert loop.time() - started < 30.0  # the fake clock: no timeout was waited for
    assert pair.client.lost_with == [None] and pair.server.lost_with == [None]


def test_a_truncated_session_is_closed_without_close_notify(
        loop: Loop, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """The peer's EOF without close_notify, and a handler that closes then: no close_notify
    goes back (asyncio sends none either), the inner transport is just closed."""
    caplog.set_level(logging.DEBUG, logger="muxio.tls")
    pair = tls_memory_pair(loop, pki.client_context(), pki.server_context())
    pair.run_until(lambda: bool(pair.client.events) and bool(pair.servers))
    pair.client_link.write_eof()  # beneath TLS: no close_notify
    pair.run_until(lambda: pair.client.lost and pair.server.lost)
    truncated = [record for record in caplog.records
                 if "closed the connection without close_notify" in record.getMessage()]
    assert len(truncated) == 2  # the server saw the client's truncation, and vice versa
