"""Real TLS clients against `muxio serve ... --tls-cert`, as users run them: curl over
HTTPS (GET, HEAD, keep-alive, Range, 100 MB checked by SHA-256) on every backend,
`openssl s_client` through the echo server (a file round trip; ALPN and SNI in its
output; renegotiation refused), and client certificates checked against --tls-ca."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.http.harness import serve_process
from tests.tls.harness import DEADLINE, Pki
from tests.tools import require_tool

BIG = 100 * 1024 * 1024
MARK = 4096


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """index.html and a sparse 100 MB file with random blocks every 8 MB and at the end
    (so a dropped, repeated or reordered piece changes the digest), and its SHA-256."""
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_bytes(b"<p>over TLS</p>\n")
    path = root / "big.bin"
    with open(path, "wb") as handle:
        handle.truncate(BIG)
        for offset in [*range(0, BIG, 8 << 20), BIG - MARK]:
            handle.seek(offset)
            handle.write(os.urandom(MARK))
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return root, digest


def tls_flags(pki: Pki, *, client_ca: bool = False) -> list[str]:
    flags = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    return [*flags, "--tls-ca", str(pki.ca)] if client_ca else flags


@contextmanager
def https_server(backend: str, pki: Pki, *extra: str,
                 client_ca: bool = False) -> Iterator[tuple[subprocess.Popen[str], int]]:
    argv = ["-m", "muxio", "-v", "serve", "http", "--backend", backend, "--host",
            "127.0.0.1", "--port", "0", *tls_flags(pki, client_ca=client_ca), *extra]
    with serve_process(argv) as (process, port):
        yield process, port


def curl(pki: Pki, port: int, *args: str) -> subprocess.CompletedProcess[bytes]:
    program = require_tool("curl", "curl")
    return subprocess.run([program, "-sS", "--cacert", str(pki.ca), "--resolve",
                           f"localhost:{port}:127.0.0.1", *args], capture_output=True,
                          timeout=DEADLINE, check=False)


def stop(process: subprocess.Popen[str]) -> str:
    """SIGINT, wait, and return the server's stderr."""
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=DEADLINE) == 0
    assert process.stderr is not None
    return process.stderr.read()


def test_curl_get_head_keepalive_range(backend: str, pki: Pki,
                                       site: tuple[Path, str]) -> None:
    root, _ = site
    with https_server(backend, pki, "--root", str(root)) as (process, port):
        url = f"https://localhost:{port}"
        result = curl(pki, port, "-v", f"{url}/index.html", f"{url}/index.html")
        err = result.stderr.decode()
        assert result.returncode == 0, err
        assert result.stdout == b"<p>over TLS</p>\n" * 2
        assert "ALPN: server accepted http/1.1" in err
        assert "SSL connection using TLSv1.3" in err
        assert err.count("SSL connection using") == 1  # one handshake for both requests
        assert "Re-using existing connection" in err
        head = curl(pki, port, "-I", f"{url}/big.bin")
        assert head.returncode == 0, head.stderr
        assert re.search(rb"^HTTP/1.1 200 OK\r$", head.stdout, re.MULTILINE)
        assert b"Content-Length: %d\r" % BIG in head.stdout
        ranged = curl(pki, port, "-D", "-", "-r", f"{BIG - MARK - 10}-{BIG - 1}",
                      f"{url}/big.bin")
        assert ranged.returncode == 0, ranged.stderr
        headers, _, body = ranged.stdout.partition(b"\r\n\r\n")
        assert headers.startswith(b"HTTP/1.1 206")
        with open(root / "big.bin", "rb") as handle:
            handle.seek(BIG - MARK - 10)
            assert body == handle.read()
        log = stop(process)
    assert "Traceback" not in log


def test_curl_downloads_100_mb_intact(backend: str, pki: Pki,
                                      site: tuple[Path, str]) -> None:
    root, expected = site
    program = require_tool("curl", "curl")
    with https_server(backend, pki, "--root", str(root)) as (_, port), subprocess.Popen(
            [program, "-sS", "--fail", "--cacert", str(pki.ca), "--resolve",
             f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/big.bin"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE) as download:
        assert download.stdout is not None and download.stderr is not None
        digest = hashlib.sha256()
        size = 0
        while chunk := download.stdout.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        assert download.wait(timeout=DEADLINE) == 0, download.stderr.read()
    assert size == BIG
    assert digest.hexdigest() == expected


def test_plain_http_to_the_tls_port_is_closed_with_one_log_line(pki: Pki) -> None:
    with https_server("epoll", pki) as (process, port):
        plain = curl(pki, port, f"http://127.0.0.1:{port}/")
        assert plain.returncode != 0 and plain.stdout == b""
        good = curl(pki, port, f"https://localhost:{port}/")
        assert good.returncode == 0 and good.stdout == b"Hello, World!\n"
        log = stop(process)
    failures = [line for line in log.splitlines() if "TLS handshake" in line]
    assert len(failures) == 1, log
    assert re.search(r"INFO muxio\.tls: TLS handshake with \('127\.0\.0\.1', \d+\) failed: "
                     r"http request \(plain HTTP sent to a TLS port\?\)$", failures[0])
    assert "Traceback" not in log


def test_client_certificates_are_checked_against_tls_ca(pki: Pki) -> None:
    with https_server("epoll", pki, client_ca=True) as (process, port):
        url = f"https://localhost:{port}/"
        good = curl(pki, port, "--cert", str(pki.client_cert), "--key", str(pki.client_key),
                    url)
        assert good.returncode == 0, good.stderr
        assert good.stdout == b"Hello, World!\n"
        rogue = curl(pki, port, "--cert", str(pki.rogue_client_cert), "--key",
                     str(pki.rogue_client_key), url)
        assert rogue.returncode != 0 and rogue.stdout == b""
        none = curl(pki, port, url)
        assert none.returncode != 0 and none.stdout == b""
        log = stop(process)
    assert re.search(r"TLS handshake with .* failed: certificate verify failed: unable to "
                     r"get local issuer certificate", log), log
    assert "failed: peer did not return a certificate" in log
    assert "Traceback" not in log


@contextmanager
def tls_echo(backend: str, pki: Pki) -> Iterator[tuple[subprocess.Popen[str], int]]:
    argv = ["-m", "muxio", "serve", "echo", "--backend", backend, "--host", "127.0.0.1",
            "--port", "0", *tls_flags(pki)]
    with serve_process(argv) as (process, port):
        yield process, port


def test_s_client_round_trip_through_the_echo_server(backend: str, pki: Pki,
                                                     tmp_path: Path) -> None:
    openssl = require_tool("openssl", "openssl")
    data = b"".join(os.urandom(48).hex().encode() + b"\n" for _ in range(20_000))  # 1.9 MB
    path = tmp_path / "lines.txt"
    path.write_bytes(data)
    with tls_echo(backend, pki) as (_, port), path.open("rb") as source, subprocess.Popen(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
             "localhost", "-CAfile", str(pki.ca), "-verify_return_error", "-quiet"],
            stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as client:
        assert client.stdout is not None
        received = bytearray()
        # -quiet keeps s_client reading after its stdin ends: read the echo, then stop it.
        while len(received) < len(data):
            chunk = client.stdout.read1(1 << 16)
            assert chunk, f"s_client stopped after {len(received)} bytes"
            received += chunk
        client.terminate()
        client.wait(timeout=DEADLINE)
    assert bytes(received) == data


def test_s_client_sees_alpn_and_sni(pki: Pki) -> None:
    openssl = require_tool("openssl", "openssl")
    with tls_echo("epoll", pki) as (_, port):
        result = subprocess.run(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
             "-alpn", "echo", "-CAfile", str(pki.ca), "-verify_return_error",
             "-tlsextdebug"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=DEADLINE, check=False)
    assert result.returncode == 0, result.stderr
    assert "ALPN protocol: echo" in result.stdout
    # The server acknowledged the SNI it was sent (an empty server_name extension).
    assert 'TLS server extension "server name" (id=0), len=0' in result.stdout
    assert "Verification: OK" in result.stdout
    assert "Protocol: TLSv1.3" in result.stdout or "TLSv1.3" in result.stdout


def test_renegotiation_is_refused(pki: Pki) -> None:
    """TLS 1.2 (1.3 has no renegotiation): s_client's 'R' asks for one; the server
    refuses with a no_renegotiation alert, and goes on serving."""
    openssl = require_tool("openssl", "openssl")
    with tls_echo("epoll", pki) as (process, port), subprocess.Popen(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-servername",
             "localhost", "-CAfile", str(pki.ca)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE) as client:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"before\n")
        client.stdin.flush()
        line = b""
        while line != b"before\n":
            line = client.stdout.readline()
            assert line, "s_client ended before the echo"
        client.stdin.write(b"R\n")
        client.stdin.flush()
        _, err = client.communicate(timeout=DEADLINE)
        assert b"no renegotiation" in err
        assert echo_once(pki, port, b"still serving") == b"still serving"
        assert process.poll() is None


def echo_once(pki: Pki, port: int, data: bytes) -> bytes:
    """One round trip through a TLS echo server with Python's blocking ssl client."""
    context = pki.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(data)
        received = b""
        while len(received) < len(data):
            chunk = sock.recv(65536)
            assert chunk, "closed before the echo"
            received += chunk
        return received
