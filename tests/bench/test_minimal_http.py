"""The benchmark baseline `MinimalHttpProtocol`: a fixed 200 per request, keep-alive and
pipelining as HTTP requires, a 400 and a close on garbage; `muxio serve http --protocol
minimal` and `python -m adapters ... --protocol minimal` host it."""

from __future__ import annotations

import subprocess
import sys

from muxio.handlers.http.minimal import RESPONSE, MinimalHttpProtocol
from muxio.testing.server import LoopThread
from muxio.transports import tcp
from tests.http.harness import Client, build_request, serve_process
from tests.tools import require_module


def test_answers_keep_alive_pipelined_and_close_requests(backend: str) -> None:
    with LoopThread(backend) as runner:
        server = runner.call(lambda loop: tcp.serve(MinimalHttpProtocol, "127.0.0.1", 0,
                                                    loop=loop))
        runner.on_close(lambda loop: (server.close(), server.abort_clients()))
        with Client(server.port) as client:
            first = client.request("GET", "/anything")
            assert (first.status, first.body) == (200, b"Hello, World!\n")
            client.send(build_request() * 3)  # pipelined: three answers, in order
            for _ in range(3):
                assert client.read_response().body == b"Hello, World!\n"
            closing = client.request(headers=(("Connection", "close"),))
            assert closing.status == 200
            assert client.is_closed_by_server()
        with Client(server.port) as client:
            client.send(b"NOT HTTP\r\n\r\n")
            assert client.read_response().status == 400
            assert client.is_closed_by_server()


def test_serve_http_protocol_minimal_and_its_refusals() -> None:
    argv = ["-m", "muxio", "serve", "http", "--host", "127.0.0.1", "--port", "0",
            "--protocol", "minimal"]
    with serve_process(argv) as (_process, port), Client(port) as client:
        response = client.request()
        assert response.raw_head + response.body == RESPONSE
    result = subprocess.run([sys.executable, "-m", "muxio", "serve", "http", "--port", "0",
                             "--protocol", "minimal", "--access-log"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("muxio: error: --protocol minimal answers every request")


def test_a_peer_hosts_the_minimal_protocol() -> None:
    require_module("uvloop", "uvloop")
    argv = ["-m", "adapters", "--loop", "uvloop", "--service", "http", "--host", "127.0.0.1",
            "--port", "0", "--protocol", "minimal"]
    with serve_process(argv) as (_process, port), Client(port) as client:
        response = client.request()
        assert response.raw_head + response.body == RESPONSE
