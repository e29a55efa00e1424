"""Real clients against the handler on every backend: curl, ab, wrk."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from muxio.handlers.http import Router, StaticFiles
from tests.http.harness import DEADLINE, make_app, serving
from tests.tools import require_tool

FILE = bytes(range(256)) * 4096  # 1 MiB: streamed by the static app


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("www")
    (base / "file.bin").write_bytes(FILE)
    (base / "page.html").write_bytes(b"<p>hello</p>")
    return base


def app_with_files(root: Path) -> Router:
    router = make_app()
    router.add("/files/", StaticFiles(root, mount="/files/"), ("GET",), prefix=True)
    return router


def run(argv: list[str], stdin: bytes = b"", timeout: float = DEADLINE
        ) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                            check=False)
    assert result.returncode == 0, (argv, result.stderr.decode(errors="replace")[-2000:])
    return result


def test_curl_reuses_the_connection_across_two_urls(backend: str, root: Path) -> None:
    curl = require_tool("curl", "curl")
    with serving(backend, app_with_files(root)) as server:
        base = f"http://127.0.0.1:{server.port}"
        result = run([curl, "-sS", "-v", f"{base}/p/one", f"{base}/files/page.html"])
    assert result.stdout == b"GET /p/one?<p>hello</p>"
    log = result.stderr.decode()
    assert re.search(r"Re-using existing connection|Reusing existing connection", log), log
    assert log.count("Connected to") == 1, log


def test_curl_head(backend: str, root: Path) -> None:
    curl = require_tool("curl", "curl")
    with serving(backend, app_with_files(root)) as server:
        result = run([curl, "-sS", "-I", f"http://127.0.0.1:{server.port}/files/file.bin"])
    head = result.stdout.decode()
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {len(FILE)}\r\n" in head
    assert "Content-Type: application/octet-stream\r\n" in head


def test_curl_range_and_conditional_get(backend: str, root: Path) -> None:
    curl = require_tool("curl", "curl")
    with serving(backend, app_with_files(root)) as server:
        url = f"http://127.0.0.1:{server.port}/files/file.bin"
        part = run([curl, "-sS", "-r", "1000-300999", "-D", "-", "-o", "-", url]).stdout
        head, _, body = part.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206 Partial Content")
        assert b"Content-Range: bytes 1000-300999/1048576" in head
        assert body == FILE[1000:301000]
        headers = run([curl, "-sS", "-I", url]).stdout.decode()
        etag = re.search(r"ETag: (\S+)", headers)
        modified = re.search(r"Last-Modified: ([^\r]+)", headers)
        assert etag and modified
        by_etag = run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                       "-H", f"If-None-Match: {etag.group(1)}", url]).stdout
        by_date = run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                       "-z", modified.group(1), url]).stdout
        changed = run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                       "-H", 'If-None-Match: "stale"', url]).stdout
        beyond = run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-r",
                      "2000000-", url]).stdout
    assert (by_etag, by_date, changed, beyond) == (b"304", b"304", b"200", b"416")


def test_curl_chunked_upload_from_stdin(backend: str) -> None:
    curl = require_tool("curl", "curl")
    payload = bytes((index * 31) % 256 for index in range(300_000))
    with serving(backend) as server:
        result = run([curl, "-sS", "-v", "-T", "-", "-D", "-",
                      f"http://127.0.0.1:{server.port}/echo"], stdin=payload)
    assert "Transfer-Encoding: chunked" in result.stderr.decode()
    # curl asks for 100-continue before a body from stdin; the server answers it.
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    assert result.stdout.startswith(interim)
    head, _, body = result.stdout[len(interim):].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert f"X-Body-SHA256: {hashlib.sha256(payload).hexdigest()}".encode() in head
    assert body == payload


def test_ab_20000_requests_500_concurrent(backend: str) -> None:
    ab = require_tool("ab", "apache2-utils")
    with serving(backend) as server:
        result = run([ab, "-q", "-n", "20000", "-c", "500", "-s", "30",
                      f"http://127.0.0.1:{server.port}/"], timeout=300)
        assert server.wait_connections(0) == 0
    report = result.stdout.decode()
    assert re.search(r"Complete requests:\s+20000\b", report), report
    assert re.search(r"Failed requests:\s+0\b", report), report
    assert "Non-2xx responses" not in report, report


def test_wrk_keepalive_load_has_no_socket_errors(backend: str) -> None:
    wrk = require_tool("wrk", "wrk")
    with serving(backend) as server:
        result = run([wrk, "-t1", "-c100", "-d3s", f"http://127.0.0.1:{server.port}/"],
                     timeout=120)
    report = result.stdout.decode()
    assert "Socket errors" not in report, report
    assert "Non-2xx" not in report, report
    requests = re.search(r"(\d+) requests in", report)
    assert requests and int(requests.group(1)) > 1000, report
