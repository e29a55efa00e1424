"""The static file app: paths, types, validators, ranges; then over TCP on every backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from muxio.handlers.http import Request, Response, Router, StaticFiles
from muxio.handlers.http.static import FileStream, RangeNotSatisfiableError, parse_range
from tests.http.harness import Client, serving


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("static")
    (base / "index.html").write_bytes(b"<h1>home</h1>")
    (base / "notes.txt").write_bytes(b"0123456789" * 10)
    (base / "data.json").write_bytes(b"{}")
    (base / "archive.tar.gz").write_bytes(b"\x1f\x8b")
    (base / "blob").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: streamed
    (base / "empty").write_bytes(b"")
    (base / "sub").mkdir()
    (base / "sub" / "index.html").write_bytes(b"sub home")
    (base / "sub" / "caf\u00e9 menu.txt").write_bytes(b"croissant")
    (base / "noindex").mkdir()
    os.mkfifo(base / "fifo")  # opening it would block the loop: never opened
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_bytes(b"secret")
    (base / "escape").symlink_to(outside / "secret")
    (base / "inside-link").symlink_to(base / "notes.txt")
    return base


def get(app: StaticFiles, path: str, method: str = "GET",
        headers: list[tuple[str, str]] | None = None) -> Response:
    raw = [(b"Host", b"x")] + [(k.encode(), v.encode()) for k, v in headers or []]
    return app(Request(method, path.encode("latin-1"), "1.1", raw, True))


def body_of(response: Response) -> bytes:
    if isinstance(response.body, bytes):
        return response.body
    body = b"".join(response.body)
    close = getattr(response.body, "close", None)
    if close is not None:
        close()
    return body


def header(response: Response, name: str) -> str | None:
    for key, value in response.headers:
        if key.lower() == name.lower():
            return value
    return None


@pytest.mark.parametrize("path", [
    "/../etc/passwd", "/sub/../../etc/passwd", "/%2e%2e/etc/passwd", "/%2E%2E%2Fetc%2Fpasswd",
    "/sub/%2e%2e/%2e%2e/x", "/escape", "/..%2f..%2fetc/passwd",
])
def test_traversal_is_refused(root: Path, path: str) -> None:
    assert get(StaticFiles(root), path).status == 403


@pytest.mark.parametrize("path", ["/bad%00name", "/%ff%fe"])
def test_undecodable_or_nul_paths_are_400(root: Path, path: str) -> None:
    assert get(StaticFiles(root), path).status == 400


def test_files_types_and_indexes(root: Path) -> None:
    app = StaticFiles(root)
    cases = {"/": (200, "text/html", b"<h1>home</h1>"),
             "/notes.txt": (200, "text/plain", b"0123456789" * 10),
             "/data.json": (200, "application/json", b"{}"),
             "/archive.tar.gz": (200, "application/gzip", b"\x1f\x8b"),
             "/sub/": (200, "text/html", b"sub home"),
             "/sub/caf%C3%A9%20menu.txt": (200, "text/plain", b"croissant"),
             "/inside-link": (200, "text/plain", b"0123456789" * 10),  # the target's type
             "/./notes.txt": (200, "text/plain", b"0123456789" * 10),
             "/empty": (200, "application/octet-stream", b"")}
    for path, (status, kind, body) in cases.items():
        response = get(app, path)
        assert (response.status, header(response, "Content-Type")) == (status, kind), path
        assert body_of(response) == body, path
    for missing in ("/nope", "/noindex/", "/sub/nope", "/notes.txt/x", "/fifo"):
        assert get(app, missing).status == 404
    redirect = get(app, "/sub")
    assert redirect.status == 301 and header(redirect, "Location") == "/sub/"


def test_large_files_are_streamed_small_ones_read(root: Path) -> None:
    app = StaticFiles(root)
    big = get(app, "/blob")
    assert isinstance(big.body, FileStream) and big.content_length == 256 * 1024
    assert body_of(big) == bytes(range(256)) * 1024
    assert isinstance(get(app, "/notes.txt").body, bytes)


def test_head_reads_nothing(root: Path) -> None:
    response = get(StaticFiles(root), "/blob", "HEAD")
    assert response.content_length == 256 * 1024
    assert body_of(response) == b""


def test_validators_and_conditional_get(root: Path) -> None:
    app = StaticFiles(root)
    first = get(app, "/notes.txt")
    etag, modified = header(first, "ETag"), header(first, "Last-Modified")
    assert etag and etag.startswith('"') and modified
    mtime = int(os.stat(root / "notes.txt").st_mtime)
    conditional = {
        (("If-None-Match", etag),): 304,
        (("If-None-Match", f'"other", W/{etag}'),): 304,
        (("If-None-Match", "*"),): 304,
        (("If-None-Match", '"other"'),): 200,
        (("If-Modified-Since", modified),): 304,
        (("If-Modified-Since", formatdate(mtime + 3600, usegmt=True)),): 304,
        (("If-Modified-Since", formatdate(mtime - 3600, usegmt=True)),): 200,
        (("If-Modified-Since", "not a date"),): 200,
        (("If-None-Match", '"other"'), ("If-Modified-Since", modified)): 200,
    }
    for headers, status in conditional.items():
        response = get(app, "/notes.txt", headers=list(headers))
        assert response.status == status, headers
        if status == 304:
            assert body_of(response) == b"" and header(response, "ETag") == etag


@pytest.mark.parametrize(("value", "size", "expected"), [
    ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)), ("bytes=-10", 100, (90, 99)),
    ("bytes=-1000", 100, (0, 99)), ("bytes=50-5000", 100, (50, 99)), ("bytes=99-99", 100,
                                                                      (99, 99)),
    ("bytes=5-1", 100, None), ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None),
    ("bytes=a-b", 100, None), ("bytes=", 100, None), ("bytes=-", 100, None),
])
def test_parse_range(value: str, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(value, size) == expected


@pytest.mark.parametrize(("value", "size"), [("bytes=100-", 100), ("bytes=-0", 100),
                                             ("bytes=0-", 0), ("bytes=-5", 0)])
def test_unsatisfiable_ranges(value: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(value, size)


def test_range_responses(root: Path) -> None:
    app = StaticFiles(root)
    partial = get(app, "/notes.txt", headers=[("Range", "bytes=10-19")])
    assert partial.status == 206 and body_of(partial) == b"0123456789"
    assert header(partial, "Content-Range") == "bytes 10-19/100"
    big = get(app, "/blob", headers=[("Range", "bytes=-70000")])
    assert big.status == 206 and body_of(big) == (bytes(range(256)) * 1024)[-70000:]
    unsatisfiable = get(app, "/notes.txt", headers=[("Range", "bytes=500-")])
    assert unsatisfiable.status == 416
    assert header(unsatisfiable, "Content-Range") == "bytes */100"
    etag = header(partial, "ETag") or ""
    assert get(app, "/notes.txt", headers=[("Range", "bytes=0-0"),
                                           ("If-Range", etag)]).status == 206
    assert get(app, "/notes.txt", headers=[("Range", "bytes=0-0"),
                                           ("If-Range", '"stale"')]).status == 200


def test_file_stream_closes_its_fd(root: Path) -> None:
    fd = os.open(root / "blob", os.O_RDONLY)
    stream = FileStream(fd, 0, 1000, 300)
    assert [len(piece) for piece in stream] == [300, 300, 300, 100]
    with pytest.raises(OSError):
        os.fstat(fd)  # closed at the end of the iteration


def test_a_file_that_shrinks_ends_the_stream_early(tmp_path: Path) -> None:
    path = tmp_path / "shrinks"
    path.write_bytes(b"x" * 1000)
    fd = os.open(path, os.O_RDONLY)
    stream = FileStream(fd, 0, 1000, 300)
    next(stream)
    os.truncate(path, 400)
    assert sum(len(piece) for piece in stream) == 100
    stream.close()


def static_router(root: Path) -> Router:
    router = Router()
    router.add("/files/", StaticFiles(root, mount="/files/"), ("GET",), prefix=True)
    return router


def test_static_over_tcp(backend: str, root: Path) -> None:
    with serving(backend, static_router(root)) as server, Client(server.port) as client:
        whole = client.request("GET", "/files/blob")
        assert whole.body == bytes(range(256)) * 1024
        assert whole.header("Accept-Ranges") == "bytes"
        part = client.request("GET", "/files/blob", headers=[("Range", "bytes=1000-1999")])
        assert part.status == 206 and part.body == (bytes(range(256)) * 1024)[1000:2000]
        again = client.request("GET", "/files/blob",
                               headers=[("If-None-Match", whole.header("ETag") or "")])
        assert again.status == 304 and again.body == b""
        head = client.request("HEAD", "/files/blob")
        assert head.header("Content-Length") == str(256 * 1024)
        assert client.request("POST", "/files/blob", body=b"x").status == 405


@pytest.fixture
def no_leaked_fds() -> Iterator[None]:
    before = set(os.listdir("/proc/self/fd"))
    yield
    assert set(os.listdir("/proc/self/fd")) <= before


def test_abandoned_download_closes_the_file(backend: str, root: Path,
                                            no_leaked_fds: None) -> None:
    with serving(backend, static_router(root)) as server:
        client = Client(server.port)
        client.send(b"GET /files/blob HTTP/1.1\r\nHost: x\r\n\r\n")
        client.sock.recv(1000)
        client.close()  # mid-body: the server must close the file when the peer goes
        assert server.wait_connections(0) == 0
