"""A 1 GiB static file through `muxio serve http --root`: byte-identical, and the server's
memory stays flat (it streams with flow control instead of reading the file whole)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from tests.http.harness import serve_process

SIZE = 1 << 30
MARK = 4096
RSS_GROWTH_LIMIT = 32 * 1024 * 1024
"""The server may grow by this much at most while sending 1 GiB (buffers, allocator)."""
DEADLINE = 120.0
"""A socket wait longer than this (no byte at all) fails the test; the download's speed is
measured by benchmarks, never asserted here."""


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A sparse 1 GiB file with distinct random blocks every 64 MiB and at the very end
    (so reordered, dropped or repeated pieces change the digest), and its SHA-256."""
    root = tmp_path_factory.mktemp("big")
    path = root / "1g.bin"
    with open(path, "wb") as handle:
        handle.truncate(SIZE)
        for offset in [*range(0, SIZE, 64 << 20), SIZE - MARK]:
            handle.seek(offset)
            handle.write(os.urandom(MARK))
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return root, digest


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_one_gib_download_is_identical_with_flat_rss(backend: str,
                                                     big_file: tuple[Path, str]) -> None:
    root, expected = big_file
    argv = ["-m", "muxio", "serve", "http", "--backend", backend, "--host", "127.0.0.1",
            "--port", "0", "--root", str(root)]
    with serve_process(argv) as (process, port), \
            socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(b"GET /1g.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            piece = sock.recv(4096)
            assert piece, "closed before the response head"
            head += piece
        head, _, first = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: %d" % SIZE in head
        baseline = peak = rss(process.pid)
        digest = hashlib.sha256(first)
        received = len(first)
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        next_sample = 0
        while received < SIZE:
            count = sock.recv_into(buffer)
            assert count, f"closed after {received} bytes"
            digest.update(view[:count])
            received += count
            if received >= next_sample:
                peak = max(peak, rss(process.pid))
                next_sample += 16 << 20
    assert received == SIZE
    assert digest.hexdigest() == expected
    assert peak - baseline < RSS_GROWTH_LIMIT, (
        f"server RSS grew from {baseline >> 20} MiB to {peak >> 20} MiB")
