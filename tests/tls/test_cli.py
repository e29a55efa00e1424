"""The TLS flags as users meet them: the chat client over TLS on TCP and KCP on every
backend, and one-line errors (exit 2) for missing, unreadable or mismatched files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chat.harness import run_chat, serve_chat
from tests.tls.harness import DEADLINE, REPO, Pki


def server_tls(pki: Pki) -> list[str]:
    return ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]


@pytest.mark.parametrize("over", ["tcp", "kcp"])
def test_chat_client_over_tls(backend: str, over: str, pki: Pki) -> None:
    with serve_chat("--backend", backend, "--transport", over, *server_tls(pki)) as (
            process, port):
        result = run_chat("localhost", str(port), "--backend", backend, "--transport", over,
                          "--tls", "--tls-ca", str(pki.ca), "--exec", "time",
                          "--exec", "list", "--exec", "close")
        assert result.returncode == 0, result.stderr
        assert re.search(rf"connected to localhost:{port} over TLSv1\.3 as client 1 ",
                         result.stdout), result.stdout
        assert "server time: " in result.stdout and "1 client(s) connected:" in result.stdout
        assert f"disconnected from localhost:{port}" in result.stdout
        # By address: the certificate names 127.0.0.1 too (no SNI is sent for an IP).
        by_ip = run_chat("127.0.0.1", str(port), "--backend", backend, "--transport", over,
                         "--tls", "--tls-ca", str(pki.ca), "--exec", "name")
        assert by_ip.returncode == 0, by_ip.stderr
        assert "over TLSv1.3 as client 2" in by_ip.stdout
        assert process.poll() is None


def test_chat_client_refuses_an_unverified_server_unless_insecure(pki: Pki) -> None:
    with serve_chat(*server_tls(pki)) as (_, port):
        refused = run_chat("localhost", str(port), "--tls", "--tls-ca", str(pki.rogue_ca),
                           "--exec", "time")
        assert refused.returncode == 1
        assert re.search(r"error: cannot connect to localhost:\d+: TLS handshake with .* "
                         r"failed: certificate verify failed: unable to get local issuer "
                         r"certificate", refused.stderr), refused.stderr
        assert "Traceback" not in refused.stderr
        insecure = run_chat("localhost", str(port), "--tls", "--insecure", "--exec", "time")
        assert insecure.returncode == 0, insecure.stderr
        assert "over TLSv1.3" in insecure.stdout
        plain = run_chat("localhost", str(port), "--exec", "time", "--timeout", "3")
        assert plain.returncode == 1  # a plain client cannot talk to a TLS server


def test_chat_server_with_client_certificates(pki: Pki) -> None:
    with serve_chat(*server_tls(pki), "--tls-ca", str(pki.ca)) as (_, port):
        good = run_chat("localhost", str(port), "--tls", "--tls-ca", str(pki.ca),
                        "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key),
                        "--exec", "time")
        assert good.returncode == 0, good.stderr
        rogue = run_chat("localhost", str(port), "--tls", "--tls-ca", str(pki.ca),
                         "--tls-cert", str(pki.rogue_client_cert), "--tls-key",
                         str(pki.rogue_client_key), "--exec", "time", "--timeout", "5")
        assert rogue.returncode == 1
        assert "Traceback" not in rogue.stderr


def muxio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "muxio", *args], capture_output=True,
                          text=True, timeout=DEADLINE, cwd=REPO, check=False)


@pytest.mark.parametrize("service", ["http", "echo", "chat"])
@pytest.mark.parametrize("over", ["tcp", "kcp"])
def test_missing_certificate_is_one_line(service: str, over: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = muxio("serve", service, "--port", "0", "--transport", over,
                   "--tls-cert", str(missing))
    assert result.returncode == 2
    assert result.stderr == f"muxio: error: --tls-cert {missing}: no such file; give the " \
                            f"path of a PEM file\n"


@pytest.mark.parametrize("case", ["key missing", "key is a directory", "key not PEM",
                                  "key of another certificate", "ca not PEM",
                                  "key without cert", "bad handshake timeout"])
def test_bad_tls_files_are_one_line(case: str, pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    cert, key = str(pki.server_cert), str(pki.server_key)
    flags, expected = {
        "key missing": (["--tls-cert", cert, "--tls-key", str(tmp_path / "nokey.pem")],
                        "--tls-key .*nokey.pem: no such file"),
        "key is a directory": (["--tls-cert", cert, "--tls-key", str(tmp_path)],
                               "--tls-key .*: is a directory"),
        "key not PEM": (["--tls-cert", cert, "--tls-key", str(not_pem)],
                        "--tls-cert .* and --tls-key .*notes.txt: not a PEM certificate "
                        "chain with its matching private key"),
        "key of another certificate": (["--tls-cert", cert, "--tls-key",
                                        str(pki.client_key)],
                                       "key values mismatch"),
        "ca not PEM": (["--tls-cert", cert, "--tls-key", key, "--tls-ca", str(not_pem)],
                       "--tls-ca .*notes.txt: no PEM CA certificate in it"),
        "key without cert": (["--tls-key", key], "--tls-key needs --tls-cert"),
        "bad handshake timeout": (["--tls-cert", cert, "--tls-key", key,
                                   "--tls-handshake-timeout", "0"],
                                  "--tls-handshake-timeout must be > 0"),
    }[case]
    result = muxio("serve", "http", "--port", "0", *flags)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("muxio: error: ") and result.stderr.count("\n") == 1
    assert re.search(expected, result.stderr), result.stderr


@pytest.mark.parametrize(("flags", "expected"), [
    (["--tls", "--tls-ca", "/nonexistent/ca.pem"], "--tls-ca /nonexistent/ca.pem: no such"),
    (["--insecure"], "--insecure needs --tls"),
    (["--tls-ca", "ca.pem"], "--tls-ca needs --tls"),
    (["--tls", "--tls-key", "key.pem"], "--tls-key needs --tls-cert"),
])
def test_chat_client_tls_errors(flags: list[str], expected: str) -> None:
    result = muxio("chat", "127.0.0.1", "9", *flags)
    assert result.returncode == 2
    assert result.stderr.startswith(f"muxio: error: {expected}"), result.stderr
    assert result.stderr.count("\n") == 1


def test_insecure_and_ca_exclude_each_other() -> None:
    result = muxio("chat", "--tls", "--insecure", "--tls-ca", "x.pem", "127.0.0.1", "9")
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
