"""A throwaway CA and a server certificate for localhost, 127.0.0.1 and ::1, for the TLS
benchmarks (made with trustme, in the `bench` extra; never use them for anything real)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from muxio.bench.runner import BenchError


@dataclass(frozen=True)
class ThrowawayPki:
    ca: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def create(cls, directory: Path) -> ThrowawayPki:
        try:
            import trustme
        except ImportError:
            raise BenchError("the TLS benchmarks need trustme for their throwaway "
                             "certificates: pip install trustme (or muxio[bench])") from None
        ca = trustme.CA(organization_name="muxio bench throwaway CA")
        server = ca.issue_cert("localhost", "127.0.0.1", "::1")
        pki = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        ca.cert_pem.write_to_path(str(pki.ca))
        with open(pki.server_cert, "wb") as handle:
            for blob in server.cert_chain_pems:
                handle.write(blob.bytes())
        server.private_key_pem.write_to_path(str(pki.server_key))
        return pki

    def server_flags(self) -> list[str]:
        """`muxio serve` / `python -m adapters` flags that turn TLS on."""
        return ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))
