"""Hosts get handlers through the handler packages' hosting shape (muxio.handlers), and
listeners through the transport registry: no host knows a handler's internals or a
transport by name."""

from __future__ import annotations

import argparse
import ast
import logging
import re
import socket
from pathlib import Path

import pytest

from muxio.cli.main import build_parser
from muxio.cli.services import serve_stream
from muxio.errors import ConfigError
from muxio.handlers import HANDLERS, hosted_handler
from muxio.loop import Loop
from muxio.testing.conformance import RecordingProtocol

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 20.0


def imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_adapters_never_host_through_the_cli_services() -> None:
    """The handler comes from its package (muxio.handlers), not from `muxio serve`'s
    service modules; only the shared TLS flags (muxio.cli.tls_options) are borrowed."""
    for path in sorted((ROOT / "adapters").glob("*.py")):
        offenders = [name for name in imported(path) if name.startswith("muxio.cli")
                     and name != "muxio.cli.tls_options"]
        assert not offenders, f"{path.name} imports {offenders}"


def test_cli_services_name_no_transport() -> None:
    """One serve for every stream transport: no `transport == "tcp"` branches."""
    pattern = re.compile(r"""transport\s*[!=]=\s*["']""")
    for path in sorted((ROOT / "muxio" / "cli" / "services").glob("*.py")):
        assert not pattern.search(path.read_text()), path.name


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_every_handler_package_exports_the_hosting_shape(name: str) -> None:
    handler = hosted_handler(name)
    assert isinstance(handler.DESCRIPTION, str) and handler.DESCRIPTION
    assert handler.ALPN and all(isinstance(name, str) for name in handler.ALPN)
    parser = argparse.ArgumentParser()
    handler.add_arguments(parser)
    argv = ["--zone", str(ROOT / "tests" / "dns" / "zones" / "example.com.zone")] if (
        name == "dns") else []
    config = handler.config_from(parser.parse_args(argv))
    with Loop() as loop:
        factory = handler.protocol_factory(loop, config)
        assert callable(factory)


def test_unknown_handler_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="available: echo, http, chat, dns"):
        hosted_handler("gopher")


def test_handler_config_errors_name_the_flag() -> None:
    handler = hosted_handler("chat")
    parser = argparse.ArgumentParser()
    handler.add_arguments(parser)
    with pytest.raises(ValueError, match="--heartbeat-misses"):
        handler.config_from(parser.parse_args(["--heartbeat-misses", "0"]))


def _serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "echo", "--host", "127.0.0.1", "--port", "0",
                                      *argv])


def test_listen_flags_follow_the_transport() -> None:
    with Loop() as loop:
        server = serve_stream(RecordingProtocol, loop, _serve_args("--backlog", "7",
                                                                   "--reuse-port"))
        listener = server.sockets[0]
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        server.close()
        with pytest.raises(ConfigError, match="--backlog does not apply to --transport kcp"):
            serve_stream(RecordingProtocol, loop, _serve_args("--transport", "kcp",
                                                              "--backlog", "7"))


def test_verbose_logs_one_line_per_connection(caplog: pytest.LogCaptureFixture) -> None:
    from muxio.cli.services import echo

    args = _serve_args()
    args.verbose = 1
    with Loop() as loop, caplog.at_level(logging.INFO, logger="muxio.serve.echo"):
        service = echo.start(loop, args)
        port = service.server.port
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        loop.run_until(lambda: len(service.server.connections) == 2, timeout=DEADLINE)
        lines = [record.getMessage() for record in caplog.records
                 if record.name == "muxio.serve.echo"]
        assert len(lines) == 2 and all(re.fullmatch(r"tcp connection from 127\.0\.0\.1 "
                                                    r"port \d+", line) for line in lines)
        for client in clients:
            client.close()
        service.close()
        loop.run_until(lambda: not service.server.connections, timeout=DEADLINE)


def test_quiet_by_default_no_wrapper() -> None:
    from muxio.cli.services.connlog import log_connections

    assert log_connections(RecordingProtocol, "echo", _serve_args()) is RecordingProtocol
