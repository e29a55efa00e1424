"""`muxio serve --workers N`: N processes share a port, a killed one comes back, a stop is
graceful, a start that fails is one error line.

Each test starts a real supervisor (`python -m muxio serve ... --workers 2`) and watches
the kernel's own view of who holds which socket (/proc), never a timing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.workers.helpers import (
    Supervised,
    children,
    established_by_pid,
    free_port,
    is_gone,
    wait_for,
)


def echo_once(sock: socket.socket, payload: bytes) -> bool:
    """Send `payload` and read it back; False if the connection is gone."""
    try:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(len(payload) - len(received))
            if not chunk:
                return False
            received += chunk
    except OSError:
        return False
    return received == payload


def test_two_workers_share_the_port_a_killed_one_comes_back_and_the_supervisor_is_a_lifeline(
        ) -> None:
    port = free_port()
    with Supervised("echo", "--host", "127.0.0.1", "--port", str(port), "--workers", "2") \
            as supervisor:
        supervisor.wait_serving()
        assert children(supervisor.process.pid) == sorted(supervisor.pids)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30)
                   for _ in range(24)]
        try:
            for index, client in enumerate(clients):
                assert echo_once(client, b"hello %d" % index)
            # Both serve: the kernel spread the 24 connections over both processes (all on
            # one would happen with probability 2^-23).
            peers = established_by_pid(port, supervisor.pids)
            assert all(peers[pid] for pid in supervisor.pids), peers
            assert sum(len(ports) for ports in peers.values()) == 24

            victim, survivor = supervisor.pids
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: is_gone(victim), "the killed worker exits")
            by_port = {client.getsockname()[1]: client for client in clients}
            # The survivor's clients go on; new clients are served (by the survivor).
            for client_port in peers[survivor]:
                assert echo_once(by_port[client_port], b"still here")
            for index in range(20):
                with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
                    assert echo_once(client, b"new %d" % index)
            # ... and the supervisor starts a new worker in the victim's place.
            wait_for(lambda: "is serving again" in supervisor.stderr(),
                     "the killed worker is restarted", timeout=120)
            assert re.search(r"worker 1 \(pid \d+\) killed by SIGKILL; restarting it in",
                             supervisor.stderr())
            workers = children(supervisor.process.pid)
            assert len(workers) == 2 and survivor in workers and victim not in workers
        finally:
            for client in clients:
                client.close()

        # The lifeline: a supervisor killed outright leaves no worker holding the port.
        os.kill(supervisor.process.pid, signal.SIGKILL)
        supervisor.wait()
        for pid in workers:
            wait_for(lambda pid=pid: is_gone(pid), f"worker {pid} exits with its supervisor")
        with socket.socket() as again:  # no SO_REUSEPORT: fails while any worker listens
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAITs stay
            again.bind(("127.0.0.1", port))
            again.listen()


async def _slow_download(port: int, started: asyncio.Event) -> tuple[int, int]:
    """GET /big read 64 KiB at a time with pauses: still going when the stop comes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
    assert length is not None, head
    expected, received = int(length.group(1)), 0
    started.set()
    try:
        while received < expected:
            chunk = await reader.read(65536)
            if not chunk:
                break
            received += len(chunk)
            await asyncio.sleep(0.005)  # a slow reader (pacing, not waiting for something)
    finally:
        writer.close()
    return expected, received


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(b"s" * 100)
    (tmp_path / "big").write_bytes(os.urandom(4 << 20))
    port = free_port()
    with Supervised("http", "--root", str(tmp_path), "--host", "127.0.0.1", "--port",
                    str(port), "--workers", "2", "--graceful-timeout", "60") as supervisor:
        supervisor.wait_serving()

        async def scenario() -> tuple[list[tuple[int, int, bool]], tuple[int, int]]:
            started = asyncio.Event()
            progress = [0]
            download = asyncio.ensure_future(_slow_download(port, started))
            askers = [asyncio.ensure_future(_keep_asking(port, progress, b"/small"))
                      for _ in range(20)]
            await asyncio.wait_for(started.wait(), 60)
            # Under load: 20 connections asking back to back, 400 answers so far.
            deadline = asyncio.get_running_loop().time() + 60
            while progress[0] < 400:
                assert asyncio.get_running_loop().time() < deadline, progress
                await asyncio.sleep(0.01)
            supervisor.signal(signal.SIGTERM)
            results = await asyncio.wait_for(asyncio.gather(*askers), 120)
            return results, await asyncio.wait_for(download, 120)

        results, (expected, received) = asyncio.run(scenario())
        assert supervisor.wait() == 0, supervisor.stderr()
    for sent, answered, closed_cleanly in results:
        assert sent == answered, results  # no request that reached a worker was dropped
        assert closed_cleanly, results
    assert received == expected  # the download in flight at SIGTERM completed
    assert "graceful timeout" not in supervisor.stderr()


def _serve(*argv: str, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "muxio", "serve", *argv], capture_output=True,
                          text=True, timeout=180, check=False, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_a_port_in_use_stops_the_start_with_one_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve("http", "--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        rf"muxio: error: worker [12] could not start: cannot listen on 127\.0\.0\.1:{port}: "
        r"address already in use \(try --port, or stop the other server\)", lines[0])
    assert "serving" not in result.stdout


def test_a_bad_zone_stops_the_start_with_one_error_line(tmp_path: Path) -> None:
    zone = tmp_path / "broken.zone"
    zone.write_text("this is not a zone\n")
    result = _serve("dns", "--zone", str(zone), "--host", "127.0.0.1", "--port",
                    str(free_port()), "--workers", "2")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("muxio: error: worker ")
    assert str(zone) in lines[0]


@pytest.mark.parametrize(("argv", "env", "message"), [
    (("http", "--port", "0", "--workers", "2"), {},
     "muxio: error: --workers 2 needs a fixed --port: with --port 0 each worker would "
     "listen on a port of its own"),
    (("chat", "--port", "7999", "--workers", "2"), {},
     "muxio: error: --workers 2 for chat needs --bus redis://HOST:PORT"),
    (("echo", "--port", "7999", "--workers", "many"), {},
     "muxio: error: --workers 'many' is not a number; give a count of worker processes or "
     "'auto' (one per CPU)"),
    (("echo", "--port", "7999"), {"MUXIO_WORKERS": "0"},
     "muxio: error: MUXIO_WORKERS 0 is out of range: give 1 to 256 (or 'auto' for one per "
     "CPU)"),
    (("echo", "--port", "7999", "--graceful-timeout", "-1"), {},
     "muxio: error: --graceful-timeout -1 must be >= 0 seconds"),
])
def test_refusals_are_one_line_and_exit_2(argv: tuple[str, ...], env: dict[str, str],
                                          message: str) -> None:
    result = _serve(*argv, env=env)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr


def test_workers_from_the_config_file_and_the_environment_over_it(tmp_path: Path) -> None:
    (tmp_path / "muxio.toml").write_text("workers = 2\n")
    port = free_port()
    with Supervised("echo", "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path) \
            as supervisor:
        line = supervisor.wait_serving()
        assert "2 workers (pids " in line and f"decided by {tmp_path / 'muxio.toml'})" in line
        supervisor.signal(signal.SIGINT)
        assert supervisor.wait() == 0
        assert "echo stopped (2 workers)" in supervisor.stdout_rest()
    # MUXIO_WORKERS=1 wins over the file: one plain process, no supervisor.
    process = subprocess.Popen(
        [sys.executable, "-m", "muxio", "serve", "echo", "--host", "127.0.0.1", "--port",
         str(port)], cwd=tmp_path, env={**os.environ, "MUXIO_WORKERS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving echo" in line and "workers" not in line, line
        assert children(process.pid) == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_sighup_rolls_the_http_workers_without_refusing_or_dropping_anything() -> None:
    """Clients keep opening connections (one request each) and keep-alive clients keep
    asking, through two rolling restarts: every request is answered. A kept-alive
    connection on a retiring worker gets `Connection: close` with a response and the
    client opens a new one."""
    port = free_port()
    with Supervised("http", "--host", "127.0.0.1", "--port", str(port), "--workers", "2") \
            as supervisor:
        supervisor.wait_serving()
        first_pids = set(supervisor.pids)

        async def scenario() -> tuple[int, int, list[str]]:
            answered = 0
            failures: list[str] = []
            rolling = True

            async def one_request_per_connection() -> None:
                nonlocal answered
                while rolling:
                    try:
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        response = await reader.read()
                        writer.close()
                    except OSError as exc:
                        failures.append(repr(exc))
                        continue
                    if response.startswith(b"HTTP/1.1 200"):
                        answered += 1
                    else:
                        failures.append(f"response {response[:40]!r}")

            async def kept_alive() -> None:
                nonlocal answered
                while rolling:
                    progress = [0]
                    try:
                        sent, done, _ = await _keep_asking(port, progress,
                                                           stop=lambda: not rolling)
                    except OSError as exc:
                        failures.append(repr(exc))
                        continue
                    answered += done
                    if sent != done:
                        failures.append(f"{sent - done} requests unanswered")

            tasks = [asyncio.ensure_future(one_request_per_connection()) for _ in range(6)]
            tasks += [asyncio.ensure_future(kept_alive()) for _ in range(4)]
            for roll in range(1, 3):
                supervisor.signal(signal.SIGHUP)
                while supervisor.stderr().count("rolling restart finished") < roll:
                    await asyncio.sleep(0.02)
            rolling = False
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            return answered, len(failures), failures[:5]

        answered, failed, examples = asyncio.run(scenario())
        assert failed == 0, examples
        assert answered > 0
        assert supervisor.stderr().count("retired: exited with code 0") == 4
        workers = children(supervisor.process.pid)
        assert len(workers) == 2 and not set(workers) & first_pids


async def _keep_asking(port: int, progress: list[int], path: bytes = b"/",
                       stop: Callable[[], bool] = lambda: False) -> tuple[int, int, bool]:
    """Requests back to back on one kept-alive connection until a response says
    Connection: close (or `stop()`); returns (sent, answered, ended by Connection: close
    and then EOF). Adds each answer to progress[0]."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = answered = 0
    try:
        while not stop():
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: test\r\n\r\n")
            sent += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
            assert length is not None, head
            await reader.readexactly(int(length.group(1)))
            answered += 1
            progress[0] += 1
            if b"\r\nConnection: close\r\n" in head:
                return sent, answered, await reader.read(1) == b""
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # a request left unanswered: counted by sent > answered
    finally:
        writer.close()
    return sent, answered, False


def test_restarts_back_off_and_a_slot_that_keeps_failing_makes_the_supervisor_give_up(
        tmp_path: Path) -> None:
    zone = tmp_path / "example.test.zone"
    zone.write_text("$ORIGIN example.test.\n@ IN SOA ns1 hostmaster 1 3600 900 604800 300\n"
                    "@ IN NS ns1\nns1 IN A 192.0.2.53\n")
    with Supervised("dns", "--zone", str(zone), "--host", "127.0.0.1", "--port",
                    str(free_port()), "--workers", "2") as supervisor:
        supervisor.wait_serving()
        zone.write_text("not a zone any more\n")  # every new worker now fails at start
        os.kill(supervisor.pids[0], signal.SIGKILL)
        assert supervisor.wait(timeout=300) == 2
        stderr = supervisor.stderr()
    delays = re.findall(r"worker 1 \(pid \d+\) .*; restarting it in (\d\.\d) s", stderr)
    assert delays == ["0.1", "0.2", "0.4", "0.8", "1.6"], stderr
    last = stderr.splitlines()[-1]
    assert last.startswith("muxio: error: worker 1 failed to start 5 times in a row: "), last
    assert str(zone) in last
