"""The top-level API: `import muxio` is enough to serve, connect and choose a backend."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import muxio
from muxio.handlers.echo import EchoProtocol
from muxio.testing.conformance import RecordingProtocol
from tests.tools import require_module

DEADLINE = 20.0


def test_every_exported_name_has_its_own_docstring() -> None:
    missing = []
    for name in muxio.__all__:
        if name == "__version__":
            continue
        value = getattr(muxio, name)
        doc = inspect.getdoc(value)
        if not doc or (inspect.isclass(value) and value.__doc__ is None):
            missing.append(name)
    assert not missing, f"exported without a docstring: {missing}"


def test_help_reads_as_a_summary() -> None:
    text = subprocess.run([sys.executable, "-c", "import muxio; help(muxio)"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PAGER": "cat", "TERM": "dumb"}).stdout
    for name in ("serve(", "connect(", "create_endpoint(", "backends(", "class Loop",
                 "class Protocol", "MuxioError"):
        assert name in text, name


def test_import_muxio_loads_no_loop_until_asked() -> None:
    """A handler importing muxio.protocols (e.g. hosted on asyncio) does not pay for the
    loop, the pollers and the transports."""
    code = ("import sys, muxio.protocols; "
            "print(sorted(m for m in sys.modules if m.startswith('muxio')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert "muxio.loop" not in loaded and "muxio.transports" not in loaded, loaded


def test_echo_served_and_reached_with_the_top_level_api(backend: str, transport: str) -> None:
    with muxio.Loop(backend) as loop:
        server = muxio.serve(EchoProtocol, "127.0.0.1", 0, transport=transport, loop=loop)
        with server:
            assert server.transport == transport
            assert server.addresses == [("127.0.0.1", server.port)]
            connecting = muxio.connect(RecordingProtocol, "127.0.0.1", server.port,
                                       transport=transport, loop=loop)
            client_transport, client = loop.run_until_complete(connecting, timeout=DEADLINE)
            client_transport.write(b"ping over " + transport.encode())
            loop.run_until(lambda: client.received == b"ping over " + transport.encode(),
                           timeout=DEADLINE)
            loop.run_until(lambda: len(server.connections) == 1, timeout=DEADLINE)
            assert client_transport.get_extra_info("transport") == transport
            client_transport.close()
            loop.run_until(lambda: client.lost, timeout=DEADLINE)
        assert not loop.is_closed(), "a loop passed in belongs to the caller"


def test_serve_with_a_backend_owns_its_loop() -> None:
    server = muxio.serve(EchoProtocol, port=0, backend="poll")
    assert server.loop.backend == "poll"
    assert {host for host, _ in server.addresses} <= {"127.0.0.1", "::1"}
    server.close()
    server.close()
    assert server.loop.is_closed()


def test_serve_forever_returns_on_sigint_and_closes() -> None:
    server = muxio.serve(EchoProtocol, "127.0.0.1", 0, backend="select")
    server.loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
    server.serve_forever()
    assert server.loop.is_closed()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_close_from_a_callback_ends_serve_forever() -> None:
    server = muxio.serve(EchoProtocol, "127.0.0.1", 0)
    server.loop.call_soon(server.close)
    server.serve_forever()
    assert server.loop.is_closed()


def test_unknown_transport_and_foreign_options_are_refused_clearly() -> None:
    with muxio.Loop() as loop:
        with pytest.raises(muxio.UnknownTransportError, match="available: tcp, kcp"):
            muxio.serve(EchoProtocol, transport="sctp", loop=loop)
        with pytest.raises(muxio.TransportOptionError,
                           match=r"transport 'kcp' takes no option backlog; its options are: "
                                 r".*idle_timeout"):
            muxio.serve(EchoProtocol, transport="kcp", loop=loop, backlog=10)
        with pytest.raises(muxio.TransportOptionError, match="no option conv"):
            muxio.connect(EchoProtocol, "127.0.0.1", 9, transport="tcp", loop=loop, conv=1)
        with pytest.raises(muxio.ConfigError, match="both loop= and backend="):
            muxio.serve(EchoProtocol, loop=loop, backend="poll")
    with pytest.raises(muxio.UnknownBackendError):
        muxio.serve(EchoProtocol, backend="no-such-poller")


def test_backends_is_the_registry_as_data() -> None:
    rows = muxio.backends()
    names = [row.name for row in rows]
    assert {"epoll", "poll", "select"} <= set(names)
    select_row = next(row for row in rows if row.name == "select")
    assert select_row.available and select_row.fd_limit == 1024 and not select_row.reason
    assert all(row.reason for row in rows if not row.available)
    with muxio.Loop("auto") as loop:
        assert next(row for row in rows if row.available).name == loop.backend


def test_create_endpoint_round_trip() -> None:
    class Collect(muxio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: list[bytes] = []

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.got.append(data)

    with muxio.Loop() as loop:
        receiver, collected = muxio.create_endpoint(Collect, ("127.0.0.1", 0), loop=loop)
        address = receiver.get_extra_info("sockname")
        sender, _ = muxio.create_endpoint(muxio.DatagramProtocol, remote_addr=address,
                                          loop=loop)
        sender.sendto(b"one datagram")
        loop.run_until(lambda: collected.got == [b"one datagram"], timeout=DEADLINE)
        sender.close()
        receiver.close()
        loop.run_once(0)


def test_tls_over_every_transport_with_the_same_call(transport: str, tmp_path: Path) -> None:
    require_module("trustme", "trustme")
    from muxio.bench.tls_certs import ThrowawayPki
    from muxio.transports import tls

    pki = ThrowawayPki.create(tmp_path)
    server_context = tls.server_context(str(pki.server_cert), str(pki.server_key))
    client_context = tls.client_context(cafile=str(pki.ca))
    with muxio.Loop() as loop:
        with muxio.serve(EchoProtocol, "127.0.0.1", 0, transport=transport, loop=loop,
                         tls=server_context, handshake_timeout=5.0) as server:
            assert server.transport == f"tls+{transport}"
            connecting = muxio.connect(RecordingProtocol, "127.0.0.1", server.port,
                                       transport=transport, loop=loop, tls=client_context,
                                       server_hostname="localhost")
            client_transport, client = loop.run_until_complete(connecting, timeout=DEADLINE)
            client_transport.write(b"sealed")
            loop.run_until(lambda: client.received == b"sealed", timeout=DEADLINE)
            client_transport.close()
            loop.run_until(lambda: client.lost, timeout=DEADLINE)
        with pytest.raises(muxio.TransportOptionError, match="no option server_hostname"):
            muxio.connect(RecordingProtocol, "127.0.0.1", 9, transport=transport, loop=loop,
                          server_hostname="localhost")
