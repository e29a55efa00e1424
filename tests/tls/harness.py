"""Shared pieces of the TLS tests: a throwaway PKI (trustme), contexts, TLS pairs over
the in-memory link, a bulk sender, and servers as users run them."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.testing.conformance import RecordingProtocol
from muxio.testing.memory import MemoryTransport, memory_pair
from muxio.transports.tls import TlsTransport, client_context, server_context

DEADLINE = 30.0
"""Longest any single wait in these tests may take before it counts as a failure."""
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Pki:
    """PEM files of a throwaway CA, a server certificate for localhost/127.0.0.1/::1, a
    client certificate from the same CA, and one from a CA nobody trusts."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path

    def server_context(self, *, alpn: tuple[str, ...] = (), client_ca: bool = False,
                       ) -> ssl.SSLContext:
        return server_context(str(self.server_cert), str(self.server_key), alpn=alpn,
                              client_ca=str(self.ca) if client_ca else None)

    def client_context(self, *, alpn: tuple[str, ...] = (), cert: bool = False,
                       rogue: bool = False) -> ssl.SSLContext:
        if rogue:
            return client_context(cafile=str(self.ca), certfile=str(self.rogue_client_cert),
                                  keyfile=str(self.rogue_client_key), alpn=alpn)
        return client_context(cafile=str(self.ca), alpn=alpn,
                              certfile=str(self.client_cert) if cert else None,
                              keyfile=str(self.client_key) if cert else None)


def make_pki(directory: Path) -> Pki:
    import trustme

    ca = trustme.CA(organization_name="muxio test CA")
    rogue = trustme.CA(organization_name="rogue CA")
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    client = ca.issue_cert("client.example", common_name="muxio test client")
    rogue_client = rogue.issue_cert("client.example", common_name="rogue client")
    paths = {name: directory / f"{name}.pem" for name in (
        "ca", "server_cert", "server_key", "client_cert", "client_key", "rogue_ca",
        "rogue_client_cert", "rogue_client_key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    rogue.cert_pem.write_to_path(str(paths["rogue_ca"]))
    for name, issued in (("server", server), ("client", client),
                         ("rogue_client", rogue_client)):
        with open(paths[f"{name}_cert"], "wb") as handle:
            for blob in issued.cert_chain_pems:
                handle.write(blob.bytes())
        issued.private_key_pem.write_to_path(str(paths[f"{name}_key"]))
    return Pki(**paths)


# -- TLS over the in-memory link -------------------------------------------------------------


@dataclass
class TlsPair:
    loop: Loop
    client: RecordingProtocol
    client_tls: TlsTransport
    server_tls: TlsTransport
    client_link: MemoryTransport
    server_link: MemoryTransport
    servers: list[Protocol]

    def run_until(self, condition: Callable[[], bool]) -> None:
        self.loop.run_until(condition, timeout=DEADLINE)

    @property
    def server(self) -> RecordingProtocol:
        protocol = self.servers[0]
        assert isinstance(protocol, RecordingProtocol)
        return protocol


def tls_memory_pair(loop: Loop, client_context: ssl.SSLContext,
                    server_context: ssl.SSLContext, *,
                    server_factory: Callable[[], Protocol] | None = None,
                    server_hostname: str = "localhost", handshake_timeout: float = 10.0,
                    close_timeout: float = 10.0, keep_open_on_eof: bool = False) -> TlsPair:
    """A TLS client and server joined by `muxio.testing.memory_pair` (no sockets)."""
    client = RecordingProtocol(keep_open_on_eof=keep_open_on_eof)
    servers: list[Protocol] = []

    def make_server() -> Protocol:
        protocol = (server_factory or (lambda: RecordingProtocol(
            keep_open_on_eof=keep_open_on_eof)))()
        servers.append(protocol)
        return protocol

    client_tls = TlsTransport(client_context, loop, server_side=False, app_protocol=client,
                              server_hostname=server_hostname,
                              handshake_timeout=handshake_timeout, close_timeout=close_timeout)
    server_tls = TlsTransport(server_context, loop, server_side=True, app_factory=make_server,
                              handshake_timeout=handshake_timeout, close_timeout=close_timeout)
    client_link, server_link = memory_pair(loop, client_tls, server_tls)
    return TlsPair(loop, client, client_tls, server_tls, client_link, server_link, servers)


# -- a bulk sender ---------------------------------------------------------------------------


def pattern(offset: int, size: int) -> bytes:
    """Bytes whose values depend on their offset (loss, repetition or reordering shows)."""
    period = bytes(index * 7 % 251 for index in range(251 * 64))
    start = offset % 251
    data = (period[start:] + period * (size // len(period) + 2))[:size]
    return data


class BulkSender(Protocol):
    """Writes `total` pattern bytes in `chunk`-sized writes as flow control allows, then
    closes; records what comes back (for echo) and when it is lost."""

    def __init__(self, total: int, chunk: int = 256 * 1024, *, close_when_sent: bool = True,
                 ) -> None:
        self.total = total
        self.chunk = chunk
        self.close_when_sent = close_when_sent
        self.sent = 0
        self.paused = False
        self.transport: Transport | None = None
        self.received = hashlib.sha256()
        self.received_bytes = 0
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._pump()

    def _pump(self) -> None:
        assert self.transport is not None
        while not self.paused and self.sent < self.total:
            size = min(self.chunk, self.total - self.sent)
            self.transport.write(pattern(self.sent, size))
            self.sent += size
        if self.sent >= self.total and self.close_when_sent and not self.paused:
            self.close_when_sent = False
            self.transport.close()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        self.received.update(data)
        self.received_bytes += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


class Sink(Protocol):
    """Hashes everything it receives; records EOF and loss."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.eof = False
        self.lost: list[Exception | None] = []
        self.transport: Transport | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def pattern_digest(total: int, chunk: int = 256 * 1024) -> str:
    digest = hashlib.sha256()
    for offset in range(0, total, chunk):
        digest.update(pattern(offset, min(chunk, total - offset)))
    return digest.hexdigest()
