"""SIGHUP across DNS workers (zones reloaded in place, dnsperf loses nothing), and KCP
sessions that stay on the worker that opened them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports.kcp import transport as kcp
from tests.tools import require_tool
from tests.workers.helpers import Supervised, free_port, udp_receive_queue, wait_for

ZONE = """\
$ORIGIN example.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 3600 900 604800 300
     IN NS  ns1
ns1  IN A   192.0.2.53
www  IN A   192.0.2.80
ver  IN TXT "{version}"
"""
QUERIES = "ver.example.test TXT\nwww.example.test A\nexample.test SOA\nnope.example.test A\n"


def _version(port: int) -> str:
    """The TXT of ver.example.test, asked from a fresh UDP socket (a fresh source port, so
    the kernel's hash picks a worker anew)."""
    query = dns.message.make_query("ver.example.test.", dns.rdatatype.TXT)
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
    return b"".join(response.answer[0][0].strings).decode()


def _write_zone(path: Path, version: str) -> None:
    staged = path.with_suffix(".new")
    staged.write_text(ZONE.format(version=version))
    os.replace(staged, path)  # a reader sees the old file or the new one, never half


def test_sighup_reloads_every_dns_worker_and_dnsperf_loses_no_query(tmp_path: Path) -> None:
    dnsperf = require_tool("dnsperf", "dnsperf")
    zone = tmp_path / "example.test.zone"
    _write_zone(zone, "v1")
    queries = tmp_path / "queries.txt"
    queries.write_text(QUERIES)
    port = free_port()
    with Supervised("dns", "--zone", str(zone), "--host", "127.0.0.1", "--port", str(port),
                    "--workers", "2") as supervisor:
        supervisor.wait_serving()
        assert {_version(port) for _ in range(16)} == {"v1"}
        stdbuf = require_tool("stdbuf", "coreutils")  # dnsperf's lines as they come
        load = subprocess.Popen(  # a fixed low rate: 300 queries/s for 8 s
            [stdbuf, "-oL", dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
             "-l", "8", "-Q", "300", "-t", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        try:
            assert load.stdout is not None
            output = []
            for line in load.stdout:
                output.append(line)
                if "Sending queries" in line:
                    break
            _write_zone(zone, "v2")
            supervisor.signal(signal.SIGHUP)
            wait_for(lambda: all(re.search(rf"\[worker {slot}\] .*serving zones example\.test",
                                           supervisor.stderr()) for slot in (1, 2)),
                     "both workers reload their zone")
            assert load.poll() is None, "the reload happened while dnsperf was sending"
            output.append(load.stdout.read())
            assert load.wait(timeout=120) == 0, "".join(output)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
            if load.stdout is not None:
                load.stdout.close()
        report = "".join(output)
        sent = re.search(r"Queries sent:\s+(\d+)", report)
        completed = re.search(r"Queries completed:\s+(\d+)", report)
        lost = re.search(r"Queries lost:\s+(\d+)", report)
        assert sent and completed and lost, report
        assert int(sent.group(1)) >= 1000, report
        assert int(lost.group(1)) == 0, report
        assert completed.group(1) == sent.group(1), report
        assert {_version(port) for _ in range(16)} == {"v2"}
        assert len(supervisor.pids) == 2  # reloaded in place: no worker was replaced
        assert "rolling restart" not in supervisor.stderr()


class _Echoes(Protocol):
    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


def test_a_kcp_session_stays_on_the_worker_that_opened_it() -> None:
    """The kernel hashes each datagram's 4-tuple to one worker's socket, and a KCP client
    sends every datagram of its session from one connected UDP socket: so the session
    never meets the other worker (which would drop its datagrams as an unknown session).
    Shown by 16 sessions making 20 round trips each through 2 workers, and by stopping one
    worker (SIGSTOP): its sessions' datagrams wait in its socket's queue, the others' are
    answered, each session on one side only."""
    port = free_port()
    with Supervised("echo", "--transport", "kcp", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", "2") as supervisor, Loop("epoll") as loop:
        supervisor.wait_serving()
        sessions: list[tuple[Transport, _Echoes]] = []
        for _ in range(16):
            future = kcp.connect(_Echoes, "127.0.0.1", port, loop=loop)
            transport, protocol = loop.run_until_complete(future, timeout=30)
            assert isinstance(protocol, _Echoes)
            sessions.append((transport, protocol))
        expected = [b""] * len(sessions)
        for round_number in range(20):
            for index, (transport, _protocol) in enumerate(sessions):
                message = b"<%d:%d>" % (index, round_number)
                expected[index] += message
                transport.write(message)
            loop.run_until(lambda: all(protocol.received == want for (_t, protocol), want
                                       in zip(sessions, expected, strict=True)), timeout=60)

        stopped = supervisor.pids[0]
        on_stopped: list[int] = []
        answered: list[int] = []
        os.kill(stopped, signal.SIGSTOP)
        try:
            for index, (transport, protocol) in enumerate(sessions):
                queued = udp_receive_queue(port, stopped)
                expected[index] += b"?"
                transport.write(b"?")
                loop.run_until(lambda p=protocol, w=expected[index], q=queued: (
                    p.received == w or udp_receive_queue(port, stopped) > q), timeout=60)
                if protocol.received == expected[index]:
                    answered.append(index)
                else:
                    on_stopped.append(index)
                    transport.abort()  # no retransmission will add to the queue
                    loop.run_once(0)
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert on_stopped and answered, (on_stopped, answered)  # both workers had sessions
        # The answered sessions keep going, each still on its own worker.
        for round_number in range(10):
            for index in answered:
                message = b"[%d:%d]" % (index, round_number)
                expected[index] += message
                sessions[index][0].write(message)
            loop.run_until(lambda: all(sessions[index][1].received == expected[index]
                                       for index in answered), timeout=60)
        for transport, _protocol in sessions:
            transport.abort()
        for _ in range(3):
            loop.run_once(0)
