"""KCP's session layer over real UDP: many sessions per port, strays ignored, dead peers
and resets detected, and a C ikcp peer (siokcp) talking to muxio's KCP server."""

from __future__ import annotations

import os
import socket
import struct
import time

from muxio.handlers.echo import EchoProtocol
from muxio.loop import Loop
from muxio.testing import FakeClock
from muxio.testing.conformance import RecordingProtocol
from muxio.testing.server import LoopThread
from muxio.transports.kcp import transport as kcp
from muxio.transports.kcp.core import Kcp
from tests.tools import require_module

DEADLINE = 30.0
HEADER = struct.Struct("<IBBHIIII")


def test_stray_datagrams_open_no_session(backend: str) -> None:
    with Loop(backend) as loop:
        server = kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:
            stray.connect(("127.0.0.1", server.port))
            stray.send(b"short")
            stray.send(os.urandom(200))
            stray.send(HEADER.pack(7, 82, 0, 128, 0, 5, 0, 0))  # an ACK: not an opening
            stray.send(HEADER.pack(8, 81, 0, 128, 0, 9, 0, 0))  # PUSH sn 9: a late segment
            endpoint = server.endpoints[0]
            loop.run_until(lambda: endpoint.dropped_datagrams >= 4, timeout=DEADLINE)
        assert not server.connections
        # ...and a real client is served normally afterwards.
        received = bytearray()
        client = RecordingProtocol()
        future = kcp.connect(lambda: client, "127.0.0.1", server.port, loop=loop)
        transport, _ = loop.run_until_complete(future, timeout=DEADLINE)
        transport.write(b"still serving")
        loop.run_until(lambda: bytes(client.received) == b"still serving", timeout=DEADLINE)
        received += client.received
        transport.abort()
        server.close()
        server.abort_clients()
        loop.run_until(lambda: not server.connections, timeout=DEADLINE)
        loop.run_once()


def test_silent_peer_is_dropped_by_idle_timeout() -> None:
    """A peer that opens a session and vanishes (no FIN exists in KCP) is timed out.
    A fake clock makes the 5 s timeout instant."""
    with Loop(clock=FakeClock()) as loop:
        server_side = RecordingProtocol()
        server = kcp.serve(lambda: server_side, "127.0.0.1", 0, loop=loop, idle_timeout=5.0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.connect(("127.0.0.1", server.port))
            sender = Kcp(1234, peer.send)
            sender.update(0)
            sender.send(b"hello, then silence")
            sender.flush()
            # Loopback UDP is delivered by the time send() returns: one non-blocking
            # iteration opens the session before the fake clock may jump.
            loop.run_once(0)
            assert len(server.connections) == 1
            loop.run_until(lambda: server_side.lost, timeout=60)
        assert bytes(server_side.received) == b"hello, then silence"
        assert isinstance(server_side.lost_with[0], TimeoutError)
        assert not server.connections
        server.close()
        loop.run_once()


def test_reset_reaches_the_peer_at_once(backend: str) -> None:
    with Loop(backend) as loop:
        server_side = RecordingProtocol()
        server = kcp.serve(lambda: server_side, "127.0.0.1", 0, loop=loop)
        client = RecordingProtocol()
        transport, _ = loop.run_until_complete(
            kcp.connect(lambda: client, "127.0.0.1", server.port, loop=loop), timeout=DEADLINE)
        loop.run_until(lambda: bool(server.connections), timeout=DEADLINE)
        transport.abort()
        loop.run_until(lambda: server_side.lost, timeout=DEADLINE)
        assert isinstance(server_side.lost_with[0], ConnectionResetError)
        server.close()
        loop.run_once()


def test_unreachable_port_surfaces_as_connection_refused(backend: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Loop(backend) as loop:
        client = RecordingProtocol()
        loop.run_until_complete(kcp.connect(lambda: client, "127.0.0.1", port, loop=loop),
                                timeout=DEADLINE)
        loop.run_until(lambda: client.lost, timeout=DEADLINE)
        assert isinstance(client.lost_with[0], ConnectionRefusedError)


def test_c_ikcp_client_talks_to_muxio_server(backend: str) -> None:
    """The C reference (siokcp wraps ikcp.c) as a client over real UDP, in message mode:
    muxio's session layer opens on its first PUSH and echoes each message back."""
    require_module("siokcp", "siokcp==0.0.5")
    import siokcp

    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: kcp.serve(EchoProtocol, "127.0.0.1", 0, loop=loop))
        runner.on_close(lambda loop: (server.close(), server.abort_clients()))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", server.port))
            sock.settimeout(0.01)

            def output(datagram: bytes) -> int:
                sock.send(datagram)
                return 0

            c_peer = siokcp.KCPConnection(4242, output, lambda message: None)
            c_peer.nodelay(1, 10, 2, 1)
            messages = [os.urandom(size) for size in (1, 100, 1376, 5000, 60000)]
            start = time.monotonic()

            def clock() -> int:
                return int((time.monotonic() - start) * 1000)

            c_peer.update(clock())
            for message in messages:
                assert c_peer.send(message) >= 0
            c_peer.flush()
            echoed = bytearray()
            deadline = time.monotonic() + DEADLINE
            while len(echoed) < sum(map(len, messages)):
                assert time.monotonic() < deadline, "the C peer did not get its echo"
                try:
                    c_peer.receive_data(sock.recv(65535))
                except TimeoutError:
                    pass
                c_peer.update(clock())
                while (event := c_peer.next_event()) is not None:
                    echoed += event
            assert bytes(echoed) == b"".join(messages)
