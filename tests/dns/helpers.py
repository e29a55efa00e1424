"""Shared by the DNS tests: the test zones, our server on a LoopThread, nsd as a peer."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import pytest

from muxio.handlers.dns import DnsServer, load_zones
from muxio.testing.server import LoopThread
from muxio.transports import tcp, udp
from tests.tools import require_tool

ZONES_DIR = Path(__file__).parent / "zones"
ZONE_FILES = [ZONES_DIR / "example.com.zone", ZONES_DIR / "example.org.zone",
              ZONES_DIR / "2.0.192.in-addr.arpa.zone"]
ZONE_ORIGINS = ["example.com", "example.org", "2.0.192.in-addr.arpa"]
DEADLINE = 30.0


@dataclass
class ServedDns:
    """Our server, UDP and TCP on one port of 127.0.0.1 (or of every `host` address)."""

    runner: LoopThread
    server: DnsServer
    port: int
    backend: str
    host: str = "127.0.0.1"
    errors: list[dict[str, Any]] = field(default_factory=list)
    """What reached the server loop's exception handler (a handler bug): must stay empty."""


def start_dns(runner: LoopThread, host: str = "127.0.0.1", zone_files: list[Path] | None = None,
              **options: float) -> tuple[DnsServer, int]:
    """Serve the test zones (or `zone_files`) on `runner`'s loop; TCP first, UDP on the same
    port. The servers are closed when the runner stops."""

    def start(loop: object) -> tuple[DnsServer, udp.UdpServer, tcp.TcpServer]:
        server = DnsServer(load_zones(zone_files or ZONE_FILES), runner.loop,
                           **options)  # type: ignore[arg-type]
        for _ in range(20):
            tcp_server = tcp.serve(server.stream_protocol, host, 0, loop=runner.loop)
            try:
                udp_server = udp.serve(server.datagram_protocol, host, tcp_server.port,
                                       loop=runner.loop)
            except OSError:
                tcp_server.close()  # that port is taken for UDP: another one
                continue
            return server, udp_server, tcp_server
        raise RuntimeError("no port free for both UDP and TCP")

    server, udp_server, tcp_server = runner.call(start)

    def stop(loop: object) -> None:
        udp_server.close()
        tcp_server.close()
        tcp_server.abort_clients()

    runner.on_close(stop)
    return server, tcp_server.port


@contextmanager
def serving(backend: str, host: str = "127.0.0.1", zone_files: list[Path] | None = None,
            **options: float) -> Iterator[ServedDns]:
    with LoopThread(backend) as runner:
        served = ServedDns(runner, *start_dns(runner, host, zone_files, **options), backend,
                           host)
        runner.call(lambda loop: loop.set_exception_handler(
            lambda _loop, context: served.errors.append(context)))
        yield served
        assert not served.errors, f"the server's loop reported errors: {served.errors}"


def udp_query(message: dns.message.Message, port: int, host: str = "127.0.0.1",
              timeout: float = 5.0) -> dns.message.Message:
    return dns.query.udp(message, host, port=port, timeout=timeout)


def tcp_query(message: dns.message.Message, port: int, host: str = "127.0.0.1",
              timeout: float = 5.0) -> dns.message.Message:
    return dns.query.tcp(message, host, port=port, timeout=timeout)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream:
            stream.bind(("127.0.0.1", 0))
            port = int(stream.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
                try:
                    datagram.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


NSD_CONF = """\
server:
    ip-address: 127.0.0.1
    port: {port}
    do-ip6: no
    zonesdir: "{directory}"
    pidfile: "{directory}/nsd.pid"
    database: ""
    xfrdfile: "{directory}/xfrd.state"
    zonelistfile: "{directory}/zone.list"
    logfile: "{directory}/nsd.log"
    username: ""
    chroot: ""
    server-count: 1
    verbosity: 1
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
"""


@dataclass
class Nsd:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    def log(self) -> str:
        path = self.directory / "nsd.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"


def write_nsd_conf(directory: Path, port: int, zone_files: list[Path],
                   origins: list[str]) -> Path:
    conf = NSD_CONF.format(port=port, directory=directory)
    for origin, path in zip(origins, zone_files, strict=True):
        conf += f"zone:\n    name: {origin}\n    zonefile: {path.name}\n"
    path = directory / "nsd.conf"
    path.write_text(conf)
    return path


@contextmanager
def running_nsd(directory: Path, zone_files: list[Path] | None = None,
                origins: list[str] | None = None) -> Iterator[Nsd]:
    """nsd in the foreground (-d) on a free 127.0.0.1 port, serving copies of the zone
    files (and every other file beside them, for $INCLUDE) from `directory`."""
    program = require_tool("nsd", "nsd")
    zone_files = zone_files or ZONE_FILES
    origins = origins or ZONE_ORIGINS
    for source in zone_files[0].parent.iterdir():
        shutil.copy(source, directory / source.name)
    for attempt in range(3):
        port = free_port()
        conf = write_nsd_conf(directory, port, zone_files, origins)
        with open(directory / "nsd.out", "wb") as output:
            process = subprocess.Popen([program, "-d", "-c", str(conf)], stdout=output,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        nsd = Nsd(process, port, directory)
        try:
            if not _wait_until_answering(nsd, origins[0], last_try=attempt == 2):
                continue  # exited at once: most likely the port was taken meanwhile
            yield nsd
            return
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_until_answering(nsd: Nsd, origin: str, last_try: bool) -> bool:
    """True once nsd answers; False if it exited (fails the test on the last try)."""
    deadline = time.monotonic() + DEADLINE
    probe = dns.message.make_query(origin, "SOA")
    while time.monotonic() < deadline:
        if nsd.process.poll() is not None:
            if not last_try:
                return False
            output = (nsd.directory / "nsd.out").read_text(errors="replace")
            pytest.fail(f"nsd exited with {nsd.process.returncode}: {output}\n{nsd.log()}")
        try:
            udp_query(probe, nsd.port, timeout=0.2)  # blocks up to 0.2 s per try
            return True
        except (dns.exception.Timeout, ConnectionRefusedError):
            continue
    pytest.fail(f"nsd did not answer on port {nsd.port} within {DEADLINE} s: {nsd.log()}")
