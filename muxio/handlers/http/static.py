"""A static file server app: GET/HEAD under a root directory.

- Content-Type from `mimetypes`; `index.html` for a directory (301 to add the trailing
  slash); 404 for anything missing or not a regular file (FIFOs and devices are never
  opened).
- Path traversal is refused (403): `..` segments, encoded or not, NUL bytes, and symlinks
  that lead outside the root.
- `ETag` (inode, size, mtime) and `Last-Modified`; `If-None-Match` / `If-Modified-Since`
  give 304.
- `Range: bytes=...` (one range) gives 206 with `Content-Range`, or 416 when it cannot be
  satisfied; `If-Range` falls back to the whole file when the validator changed.
- Out of file descriptors (EMFILE / ENFILE) is 503 with `Retry-After`, not 404: the file
  is there, the server is short of a resource for a moment (logged at most once a second).
- Header values are parsed strictly and never raise: a range with non-ASCII digits
  (`str.isdigit` accepts superscripts), with thousands of digits (`int()` refuses past
  4300), or a date with an absurd year or offset is treated as absent or invalid, as RFC
  9110 allows, never as a 500.
- A file larger than one chunk is streamed: `FileStream` reads a chunk at a time as the
  connection drains (the shell honours pause_writing/resume_writing), so memory stays
  flat whatever the file size. Reads are plain `pread`s in the loop thread: fine for files
  in the page cache, a stall for cold files on slow disks.
"""

from __future__ import annotations

import errno
import logging
import mimetypes
import os
import stat
import time
from collections.abc import Iterator
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from muxio.handlers.http.messages import Request, Response

log = logging.getLogger("muxio.http")

DEFAULT_CHUNK_SIZE = 64 * 1024
RETRY_AFTER = 1
"""Seconds a client is asked to wait (Retry-After) when the server is out of fds."""
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
_MAX_DIGITS = 18
"""A byte position with more significant digits than this is beyond any file."""
_BEYOND_ANY_FILE = 1_000_000_000_000_000_000  # 10 ** _MAX_DIGITS
_ENCODED_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                  "xz": "application/x-xz", "br": "application/x-brotli",
                  "compress": "application/x-compress"}

FORBIDDEN = Response.text("403 Forbidden: the path leaves the served directory\n", 403)
NOT_FOUND = Response.text("404 Not Found\n", 404)
BAD_PATH = Response.text("400 Bad Request: the path is not valid percent-encoded UTF-8\n",
                         400)
UNAVAILABLE = Response(503, (("Content-Type", "text/plain; charset=utf-8"),
                             ("Retry-After", str(RETRY_AFTER))),
                       b"503 Service Unavailable: the server is out of file descriptors; "
                       b"retry shortly\n")


class _Throttle:
    """Lets a message through at most once per `interval` seconds (a flood of requests
    while the server is out of fds must not become a flood of log lines)."""

    __slots__ = ("_interval", "_next", "suppressed")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0
        self.suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self._interval
        return True


_fd_warning = _Throttle(1.0)


class FileStream:
    """Iterates over `length` bytes of an open file from `offset`, one chunk at a time;
    owns the fd (closed at the end, on `close()`, or when garbage collected)."""

    __slots__ = ("_fd", "_offset", "_remaining", "_chunk_size")

    def __init__(self, fd: int, offset: int, length: int,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self._fd = fd
        self._offset = offset
        self._remaining = length
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._remaining <= 0 or self._fd < 0:
            self.close()
            raise StopIteration
        data = os.pread(self._fd, min(self._chunk_size, self._remaining), self._offset)
        if not data:  # the file shrank under us: the shell aborts the short response
            self.close()
            raise StopIteration
        self._offset += len(data)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


class StaticFiles:
    """Serve the files under `root`. Mount it on a prefix route, e.g.
    `router.add("/", StaticFiles("public"), ("GET",), prefix=True)`."""

    __slots__ = ("root", "_prefix", "chunk_size", "index")

    def __init__(self, root: str | os.PathLike[str], *, mount: str = "/",
                 chunk_size: int = DEFAULT_CHUNK_SIZE, index: str = "index.html") -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise NotADirectoryError(f"static root {os.fspath(root)!r} is not a directory")
        self.root = real
        self._prefix = mount if mount.endswith("/") else mount + "/"
        self.chunk_size = chunk_size
        self.index = index

    def resolve(self, raw_path: str) -> str | Response:
        """The file system path for a request path, or the error response."""
        relative = raw_path[len(self._prefix):] if raw_path.startswith(self._prefix) else (
            raw_path.lstrip("/"))
        try:
            decoded = unquote_to_bytes(relative.encode("latin-1")).decode("utf-8")
        except UnicodeDecodeError:
            return BAD_PATH
        if "\0" in decoded:
            return BAD_PATH
        parts = [part for part in decoded.split("/") if part not in ("", ".")]
        if ".." in parts:
            return FORBIDDEN
        path = os.path.join(self.root, *parts)
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            return FORBIDDEN  # a symlink pointing outside the root
        return real

    def __call__(self, request: Request) -> Response:
        path = self.resolve(request.path)
        if isinstance(path, Response):
            return path
        # stat before open: opening a FIFO or a device could block or have side effects.
        info = _stat(path)
        if isinstance(info, Response):
            return info
        if stat.S_ISDIR(info.st_mode):
            if not request.path.endswith("/"):
                location = request.path + "/" + (f"?{request.query}" if request.query else "")
                return Response(301, (("Location", location),
                                      ("Content-Type", "text/plain; charset=utf-8")),
                                f"301 Moved Permanently: {location}\n".encode("latin-1"))
            path = os.path.join(path, self.index)
            info = _stat(path)
            if isinstance(info, Response):
                return info
        if not stat.S_ISREG(info.st_mode):
            return NOT_FOUND
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except PermissionError:
            return FORBIDDEN
        except OSError as exc:
            if exc.errno in _OUT_OF_DESCRIPTORS:
                return _out_of_descriptors(exc)
            return NOT_FOUND
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # replaced between stat and open
                return NOT_FOUND
            response = self._file_response(request, path, fd, info)
            if isinstance(response.body, FileStream):
                fd = -1  # owned by the stream now
            return response
        finally:
            if fd >= 0:
                os.close(fd)

    def _file_response(self, request: Request, path: str, fd: int,
                       info: os.stat_result) -> Response:
        size = info.st_size
        etag = f'"{info.st_ino:x}-{size:x}-{info.st_mtime_ns:x}"'
        last_modified = formatdate(int(info.st_mtime), usegmt=True)
        validators = (("ETag", etag), ("Last-Modified", last_modified))
        headers = request.headers
        if _not_modified(headers.get("If-None-Match"), headers.get("If-Modified-Since"),
                         etag, int(info.st_mtime)):
            return Response(304, validators)
        content_type = _content_type(path)
        common: tuple[tuple[str, str], ...] = (
            ("Content-Type", content_type), ("Accept-Ranges", "bytes"), *validators)
        offset, length, status = 0, size, 200
        range_header = headers.get("Range")
        if range_header is not None and _if_range_holds(headers.get("If-Range"), etag,
                                                        last_modified):
            try:
                span = parse_range(range_header, size)
            except RangeNotSatisfiableError as error:
                return Response(416, (("Content-Range", f"bytes */{size}"),
                                      ("Content-Type", "text/plain; charset=utf-8")),
                                f"416 Range Not Satisfiable: {error}\n".encode())
            if span is not None:
                offset, end = span
                length, status = end - offset + 1, 206
                common = (*common, ("Content-Range", f"bytes {offset}-{end}/{size}"))
        if request.method == "HEAD" or length <= self.chunk_size:
            data = b"" if request.method == "HEAD" else os.pread(fd, length, offset)
            if len(data) != length and request.method != "HEAD":
                return NOT_FOUND  # the file changed between fstat and read
            if request.method == "HEAD":
                return Response(status, common, _EmptyBody(), content_length=length)
            return Response(status, common, data)
        return Response(status, common, FileStream(fd, offset, length, self.chunk_size),
                        content_length=length)


def _out_of_descriptors(exc: OSError) -> Response:
    if _fd_warning.allow():
        suppressed, _fd_warning.suppressed = _fd_warning.suppressed, 0
        log.warning("cannot open a file to serve: %s; answering 503 (raise the fd limit, "
                    "ulimit -n)%s", exc.strerror,
                    f" ({suppressed} more since the last warning)" if suppressed else "")
    return UNAVAILABLE


def _stat(path: str) -> os.stat_result | Response:
    try:
        return os.stat(path)
    except PermissionError:
        return FORBIDDEN
    except OSError:  # missing, or a path through a file ("a.txt/x"), or too long
        return NOT_FOUND


class _EmptyBody:
    """The body of a HEAD response: the length is announced, nothing is read."""

    __slots__ = ()

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


def _content_type(path: str) -> str:
    kind, encoding = mimetypes.guess_type(path, strict=False)
    if encoding is not None:
        return _ENCODED_TYPES.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


def _not_modified(if_none_match: str | None, if_modified_since: str | None, etag: str,
                  mtime: int) -> bool:
    """RFC 9110 13.2.2: If-None-Match (weak comparison) wins over If-Modified-Since."""
    if if_none_match is not None:
        wanted = etag.removeprefix("W/")
        for item in if_none_match.split(","):
            candidate = item.strip()
            if candidate == "*" or candidate.removeprefix("W/") == wanted:
                return True
        return False
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False  # not a date (or not one a computer can hold): ignored
        return mtime <= since
    return False


def _if_range_holds(if_range: str | None, etag: str, last_modified: str) -> bool:
    """RFC 9110 13.1.5: the range applies only if the validator still matches (strong)."""
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith('"'):
        return if_range == etag
    return if_range == last_modified


class RangeNotSatisfiableError(ValueError):
    """The Range starts past the end of the file (or is an empty suffix): 416."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One `bytes=` range as (first, last) inclusive, or None when the header is malformed
    or asks for several ranges (then the whole file is sent, which RFC 9110 14.2 allows).
    Raises RangeNotSatisfiableError when no byte of the file is in the range."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    first_text, last_text = first_text.strip(), last_text.strip()
    if not (_is_digits(first_text) or first_text == "") or not (
            _is_digits(last_text) or last_text == ""):
        return None
    if first_text == "":
        if last_text == "":
            return None
        suffix = _position(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError(f"an empty suffix range of a {size}-byte file")
        return max(0, size - suffix), size - 1
    first = _position(first_text)
    last = _position(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # invalid: ignored
    if first >= size:
        shown = first if first < _BEYOND_ANY_FILE else f"{first_text[:20]}..."
        raise RangeNotSatisfiableError(f"the range starts at byte {shown}; the file has "
                                       f"{size} bytes")
    return first, min(last, size - 1)


def _is_digits(text: str) -> bool:
    """ASCII digits only (`str.isdigit` also accepts '²' and other scripts' digits)."""
    return text.isascii() and text.isdigit()


def _position(digits: str) -> int:
    """A byte position from ASCII digits; anything with more than _MAX_DIGITS significant
    digits is _BEYOND_ANY_FILE (int() refuses past 4300 digits, and no file is that big)."""
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return _BEYOND_ANY_FILE
    return int(significant or "0")
