"""`muxio serve dns` and `muxio resolve` as a user runs them: both loopbacks, UDP and TCP on
one port, SIGHUP reloads without losing a query, clean stop, errors, dig-like output."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import pytest

from muxio.cli.services import dns as dns_service
from muxio.handlers.dns import ZoneSet
from muxio.testing.matrix import matrix_backends
from muxio.testing.server import LoopThread
from tests.dns.helpers import ZONE_FILES, ZONES_DIR, ServedDns, free_port, tcp_query, udp_query

DEADLINE = 30.0


@contextmanager
def muxio_serve_dns(backend: str, zone_files: list[Path],
                    *extra: str) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    argv = [sys.executable, "-m", "muxio", "serve", "dns", "--port", "0", "--backend", backend]
    for path in zone_files:
        argv += ["--zone", str(path)]
    process = subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving dns on udp 127\.0\.0\.1:(\d+)", line)
        assert match, f"{line}{process.stderr.read() if process.poll() is not None else ''}"
        yield process, int(match.group(1)), line
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def first_address(message: dns.message.Message) -> str:
    return str(message.answer[-1][0])


def test_serve_dns_on_both_loopbacks_reload_and_stop(backend: str, tmp_path: Path) -> None:
    for source in ZONES_DIR.iterdir():
        shutil.copy(source, tmp_path / source.name)
    zone_files = [tmp_path / path.name for path in ZONE_FILES]
    with muxio_serve_dns(backend, zone_files, "--host", "localhost") as (process, port, line):
        assert f"with backend {backend} (decided by --backend)" in line
        assert f"tcp 127.0.0.1:{port}" in line
        assert "zones example.com., example.org., 2.0.192.in-addr.arpa." in line
        hosts = ["127.0.0.1"]
        if f"udp [::1]:{port}" in line:
            assert f"tcp [::1]:{port}" in line
            hosts.append("::1")
        query = dns.message.make_query("www.example.com", "A")
        for host in hosts:
            for ask in (udp_query, tcp_query):
                reply = ask(query, port, host)
                assert reply.rcode() == dns.rcode.NOERROR
                assert first_address(reply) == "192.0.2.1"

        # SIGHUP while a client keeps asking: every query answered, new data afterwards.
        answered: list[str] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                try:
                    answered.append(first_address(udp_query(query, port, timeout=5)))
                except (dns.exception.DNSException, OSError) as exc:
                    failures.append(exc)

        zone = tmp_path / "example.com.zone"
        zone.write_text(zone.read_text().replace("IN A     192.0.2.1", "IN A     192.0.2.201"))
        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            for _ in range(5):
                process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + DEADLINE
            reply = udp_query(query, port)
            while first_address(reply) != "192.0.2.201" and time.monotonic() < deadline:
                reply = udp_query(query, port)  # a round trip per check: the signal is async
        finally:
            stop.set()
            asker.join(DEADLINE)
        assert first_address(reply) == "192.0.2.201"
        assert not failures
        assert set(answered) <= {"192.0.2.1", "192.0.2.201"}

        # A broken file: the reload fails (logged once read, off the loop), the zones
        # already served stay.
        zone.write_text("$ORIGIN example.com.\nthis is not a zone file\n")
        process.send_signal(signal.SIGHUP)
        assert process.stdout is not None and process.stderr is not None
        log = ""
        while "zone reload failed, still serving the previous zones" not in log:
            logged = process.stderr.readline()
            assert logged, f"the server exited: {log}"
            log += logged
        assert first_address(udp_query(query, port)) == "192.0.2.201"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
        assert "dns stopped" in process.stdout.read()


def test_serve_dns_stops_cleanly_with_sigint(tmp_path: Path) -> None:
    with muxio_serve_dns("poll", ZONE_FILES[:1]) as (process, port, _line):
        assert udp_query(dns.message.make_query("example.com", "SOA"), port).answer
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=DEADLINE) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--zone", "/nonexistent/example.com.zone"], "cannot read zone file"),
    (["--zone", str(ZONE_FILES[0]), "--zone", str(ZONE_FILES[0])], "loaded twice"),
    (["--zone", str(ZONE_FILES[0]), "--max-udp-size", "100"], "max_udp_payload"),
])
def test_serve_dns_errors_are_reported(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "muxio", "serve", "dns", "--port", "0",
                             *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def resolve_cli(backend: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "muxio", "resolve", *args, "--backend", backend],
                          capture_output=True, text=True, timeout=60, check=False)


def test_muxio_resolve_prints_like_dig(served: ServedDns) -> None:
    result = resolve_cli(served.backend, "example.com", "MX", "--server",
                         f"127.0.0.1:{served.port}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "status: NOERROR" in out and re.search(r"flags: qr aa rd;", out)
    assert re.search(r"^example\.com\.\s+3600\s+IN\s+MX\s+10 mail\.example\.com\.$", out, re.M)
    assert ";; AUTHORITY SECTION:" in out and ";; ADDITIONAL SECTION:" in out
    assert f";; SERVER: 127.0.0.1#{served.port} (UDP)" in out


def test_muxio_resolve_follows_tc_to_tcp_and_short_output(served: ServedDns) -> None:
    result = resolve_cli(served.backend, "big.example.com", "TXT", "--server",
                         f"127.0.0.1:{served.port}")
    assert result.returncode == 0, result.stderr
    assert "(TCP)" in result.stdout
    short = resolve_cli(served.backend, "alias.example.com", "--short", "--norec", "--server",
                        f"127.0.0.1:{served.port}")
    assert short.stdout.split() == ["www.example.com.", "example.com.", "192.0.2.1"]


def test_muxio_resolve_nxdomain_no_reply_and_bad_arguments(served: ServedDns) -> None:
    nxdomain = resolve_cli(served.backend, "missing.example.com", "--server",
                           f"127.0.0.1:{served.port}")
    assert nxdomain.returncode == 0 and "status: NXDOMAIN" in nxdomain.stdout
    silent = resolve_cli(served.backend, "example.com", "--server", f"127.0.0.1:{free_port()}",
                         "--timeout", "0.2", "--tries", "1")
    assert silent.returncode == 9
    assert "no answer for example.com. A" in silent.stderr
    assert "without a port" not in silent.stderr  # the hint is for a --server with no port
    bad_server = resolve_cli(served.backend, "example.com", "--server", "dns.example")
    assert bad_server.returncode == 2 and "not an IP address" in bad_server.stderr
    bad_type = resolve_cli(served.backend, "example.com", "NOTATYPE", "--server",
                           f"127.0.0.1:{served.port}")
    assert bad_type.returncode == 2 and "unknown record type" in bad_type.stderr


# -- reload safety (issue 13): what a SIGHUP may find, and the loop never waits on it --------


@pytest.mark.parametrize("backend_name", [name for name in ("epoll", "poll")
                                          if name in matrix_backends()])
def test_reload_refuses_a_fifo_and_keeps_serving(backend_name: str, tmp_path: Path) -> None:
    for source in ZONES_DIR.iterdir():
        shutil.copy(source, tmp_path / source.name)
    zone = tmp_path / "example.com.zone"
    with muxio_serve_dns(backend_name, [zone]) as (process, port, _line):
        zone.unlink()
        os.mkfifo(zone)  # nobody will ever write to it: reading it would block forever
        process.send_signal(signal.SIGHUP)
        assert process.stderr is not None
        log = ""
        while "zone reload failed" not in log:  # the refusal, logged (an event)
            line = process.stderr.readline()
            assert line, f"the server exited: {log}"
            log += line
        assert "is a FIFO, not a regular file" in log
        reply = udp_query(dns.message.make_query("www.example.com", "A"), port)
        assert first_address(reply) == "192.0.2.1"  # the zones already served
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0  # SIGTERM works: nothing is stuck


def test_an_empty_zone_file_is_one_clear_error_at_start(tmp_path: Path) -> None:
    (tmp_path / "empty.zone").write_text("")
    result = subprocess.run([sys.executable, "-m", "muxio", "serve", "dns", "--port", "0",
                             "--zone", str(tmp_path / "empty.zone")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"muxio: error: {tmp_path / 'empty.zone'}: the zone file holds no records: give it "
        f"at least the zone's SOA and NS records"]


def service_arguments(zone_files: list[Path]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    dns_service.add_arguments(parser)
    args = parser.parse_args([argument for path in zone_files
                              for argument in ("--zone", str(path))])
    args.host, args.port, args.backlog, args.reuse_port = "127.0.0.1", 0, None, False
    return args


def test_reload_reads_the_zones_off_the_loop(tmp_path: Path) -> None:
    """A loader stuck (as on a huge zone) while the loop answers from the old zones; a
    SIGHUP meanwhile is folded into one more reload; then the new zones are served."""
    for source in ZONES_DIR.iterdir():
        shutil.copy(source, tmp_path / source.name)
    zone = tmp_path / "example.com.zone"
    entered, release = threading.Event(), threading.Event()
    loads: list[str] = []

    def stuck_loader(paths: list[str]) -> ZoneSet:
        loads.append("started")
        entered.set()
        assert release.wait(DEADLINE)
        return dns_service.load(paths)

    query = dns.message.make_query("www.example.com", "A")
    with LoopThread(matrix_backends()[0]) as runner:
        service = runner.call(lambda loop: dns_service.start(loop, service_arguments([zone])))
        runner.on_close(lambda loop: service.close())
        port = service.udp_server.addresses[0][1]
        service.loader = stuck_loader
        zone.write_text(zone.read_text().replace("IN A     192.0.2.1", "IN A     192.0.2.201"))
        runner.call(lambda loop: service.reload())
        assert entered.wait(DEADLINE)
        assert first_address(udp_query(query, port)) == "192.0.2.1"  # answered meanwhile
        assert runner.call(lambda loop: service.reloading)
        runner.call(lambda loop: service.reload())  # folded into one more
        runner.call(lambda loop: service.reload())
        release.set()
        deadline = time.monotonic() + DEADLINE
        while runner.call(lambda loop: service.server.statistics().reloads) < 2:
            assert time.monotonic() < deadline, "the reloads did not finish"
        assert first_address(udp_query(query, port)) == "192.0.2.201"
        assert loads == ["started", "started"]
        assert not runner.call(lambda loop: service.reloading)


def test_resolve_hints_at_port_5300_only_for_a_server_without_port() -> None:
    from muxio.cli.resolve import _has_port

    assert [_has_port(server) for server in ("localhost", "127.0.0.1", "::1", "[::1]")] == [
        False] * 4
    assert all(_has_port(server) for server in ("localhost:5300", "[::1]:53", "10.0.0.1:53"))
