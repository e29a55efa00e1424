"""A `muxio serve ... --workers N` supervisor under test, and what the kernel says about
which worker holds which socket."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from muxio.bench.runner import terminate
from tests.processes import wait_until

START_DEADLINE = 120.0
"""Seconds for N interpreters to start on a loaded 2-core host (a deadline, not a wait)."""


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1 (DNS and KCP need both)."""
    while True:
        with socket.socket() as stream:
            stream.bind(("127.0.0.1", 0))
            port = int(stream.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
                try:
                    datagram.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0,
             interval: float = 0.02) -> None:
    """`tests.processes.wait_until` with the longer deadline N starting workers need."""
    wait_until(condition, what, timeout, interval)


class Supervised:
    """`python -m muxio serve *argv` started, its serving line read, stopped on exit."""

    def __init__(self, *argv: str, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self._stderr = tempfile.NamedTemporaryFile("w+", prefix="muxio-sup-",  # noqa: SIM115
                                                   suffix=".log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "muxio", "serve", *argv], stdout=subprocess.PIPE,
            stderr=self._stderr, text=True, cwd=cwd, env={**os.environ, **(env or {})})
        self.serving_line = ""
        self.pids: list[int] = []
        self._final_stderr = ""

    def wait_serving(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the supervisor prints it once all are ready
        assert "serving" in line, f"no serving line: {line!r}\n{self.stderr()}"
        self.serving_line = line
        match = re.search(r"workers \(pids ([\d, ]+);", line)
        assert match, line
        self.pids = [int(pid) for pid in match.group(1).split(", ")]
        return line

    def stderr(self) -> str:
        if self._stderr.closed:
            return self._final_stderr
        with open(self._stderr.name) as handle:
            return handle.read()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 120.0) -> int:
        return self.process.wait(timeout=timeout)

    def stdout_rest(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def __enter__(self) -> Supervised:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        terminate(self.process, timeout=60)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if not self._stderr.closed:
            self._final_stderr = self.stderr()
            self._stderr.close()


def children(pid: int) -> list[int]:
    """Live (not zombie) child processes of `pid`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(name))
    return sorted(found)


def is_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie has closed its sockets already)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _proc_net(kind: str) -> list[list[str]]:
    rows = []
    for suffix in ("", "6"):
        try:
            with open(f"/proc/net/{kind}{suffix}") as handle:
                rows += [line.split() for line in handle.readlines()[1:]]
        except OSError:
            continue
    return rows


def established_by_pid(port: int, pids: Sequence[int]) -> dict[int, set[int]]:
    """The client ports of the established server-side TCP connections on `port` that
    each pid holds."""
    owners = {inode: pid for pid in pids for inode in socket_inodes(pid)}
    peers: dict[int, set[int]] = {pid: set() for pid in pids}
    for row in _proc_net("tcp"):
        local, remote, state, inode = row[1], row[2], row[3], int(row[9])
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in owners:
            peers[owners[inode]].add(int(remote.rsplit(":", 1)[1], 16))
    return peers


def udp_receive_queue(port: int, pid: int) -> int:
    """Bytes waiting in `pid`'s UDP sockets bound to `port` (its rx_queue)."""
    inodes = socket_inodes(pid)
    total = 0
    for row in _proc_net("udp"):
        local, queues, inode = row[1], row[4], int(row[9])
        if int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
            total += int(queues.split(":")[1], 16)
    return total
