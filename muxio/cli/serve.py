"""`muxio serve NAME`: run a service on the configured backend until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import signal
import socket
from typing import Any, cast

from muxio.cli.main import add_backend_option
from muxio.cli.services import SERVICES, ServiceModule
from muxio.errors import ConfigError
from muxio.loop import Loop

log = logging.getLogger("muxio.serve")


def _load(name: str) -> ServiceModule | None:
    try:
        return cast(ServiceModule, importlib.import_module(SERVICES[name]))
    except ModuleNotFoundError as exc:
        if exc.name == SERVICES[name]:
            return None  # that service is not part of this build
        raise


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run a server (echo, http, chat, dns)")
    services = serve.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name in SERVICES:
        module = _load(name)
        if module is None:
            continue
        parser = services.add_parser(name, help=module.DESCRIPTION,
                                     description=module.DESCRIPTION)
        parser.add_argument("--host", default="localhost",
                            help="address to listen on; 'localhost' listens on 127.0.0.1 "
                                 "and ::1, '' on every interface (default: localhost)")
        parser.add_argument("--port", type=int, default=module.DEFAULT_PORT,
                            help=f"port (default: {module.DEFAULT_PORT}; 0 = any free port)")
        parser.add_argument("--backlog", type=int, default=None,
                            help="listen backlog (default: the system's somaxconn)")
        parser.add_argument("--reuse-port", action="store_true", help="set SO_REUSEPORT")
        parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                            help="a log line per connection (per query for dns); -vv debug")
        add_backend_option(parser)
        module.add_arguments(parser)
        parser.set_defaults(func=run, service_module=module)


def run(args: argparse.Namespace) -> int:
    module: ServiceModule = args.service_module
    if args.host == "":
        args.host = None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is out of range 0-65535")
    logging.getLogger("muxio").setLevel(min(logging.getLogger("muxio").getEffectiveLevel(),
                                            logging.INFO))
    with Loop(cli_backend=args.backend) as loop:
        try:
            service = module.start(loop, args)
        except OSError as exc:
            raise ConfigError(describe_listen_error(exc, args.host, args.port)) from None
        choice = loop.backend_choice
        decided = f" (decided by {choice.source})" if choice else ""
        print(f"muxio: serving {args.service} on {service.describe()} "
              f"with backend {loop.backend}{decided}", flush=True)

        def shutdown(signum: int) -> None:
            log.info("%s received: closing %s", signal.Signals(signum).name, args.service)
            loop.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, shutdown, signum)
        loop.run_forever()
        service.close()
        # Let close callbacks (connection_lost, flushes) run before the loop closes.
        for _ in range(3):
            loop.run_once(0)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print(f"muxio: {args.service} stopped", flush=True)
    return 0


def describe_listen_error(exc: OSError, host: str | None, port: int) -> str:
    """One line saying why a server could not listen, and what to do about it."""
    where = f"{host or '*'}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve --host {host!r}: {exc.strerror}; give an address or a name"
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {where}: address already in use (try --port, or stop "
                f"the other server)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {where}: {host} is not an address of this machine (try "
                f"--host localhost, or '' for every interface)")
    if exc.errno == errno.EACCES:
        return (f"cannot listen on {where}: permission denied (ports below 1024 need root "
                f"or CAP_NET_BIND_SERVICE; try --port 8080)")
    return f"cannot listen on {where}: {exc.strerror or exc}"
