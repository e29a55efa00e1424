"""`muxio serve NAME`: run a service on the configured backend until SIGINT/SIGTERM.

With `--workers N` (N > 1) this process becomes a supervisor of N ordinary `muxio serve`
processes sharing the port (muxio.cli.workers); SIGTERM/SIGINT stop gracefully
(muxio.cli.graceful)."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import socket
import sys
from typing import Any, cast

from muxio.cli.graceful import DEFAULT_GRACEFUL_TIMEOUT, GracefulStop, worker_slot
from muxio.cli.limits import raise_open_file_limit
from muxio.cli.main import add_backend_option
from muxio.cli.services import SERVICES, ServiceModule
from muxio.config import resolve_workers
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
        add_worker_options(parser)
        module.add_arguments(parser)
        parser.set_defaults(func=run, service_module=module, service_parser=parser)


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """--workers and --graceful-timeout (see muxio.cli.workers and muxio.cli.graceful)."""
    parser.add_argument("--workers", default=None, metavar="N",
                        help="worker processes sharing the port (SO_REUSEPORT), each with "
                             "its own loop; 'auto' = one per CPU; overrides MUXIO_WORKERS "
                             "and 'workers' in config files (default: 1, no supervisor)")
    parser.add_argument("--graceful-timeout", type=float, metavar="S",
                        default=DEFAULT_GRACEFUL_TIMEOUT,
                        help="on SIGTERM/SIGINT, stop accepting and let in-flight work "
                             "finish for at most S seconds before closing what is left "
                             f"(default: {DEFAULT_GRACEFUL_TIMEOUT:g}; a second signal "
                             "closes at once)")


def run(args: argparse.Namespace) -> int:
    module: ServiceModule = args.service_module
    if args.host == "":
        args.host = None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is out of range 0-65535")
    if not args.graceful_timeout >= 0:
        raise ConfigError(f"--graceful-timeout {args.graceful_timeout:g} must be >= 0 "
                          f"seconds")
    logging.getLogger("muxio").setLevel(min(logging.getLogger("muxio").getEffectiveLevel(),
                                            logging.INFO))
    raise_open_file_limit()  # one fd per connection; workers inherit it
    workers = resolve_workers(args.workers)
    if workers.count > 1:
        from muxio.cli.workers import supervise

        return supervise(args, workers)
    with Loop(cli_backend=args.backend) as loop:
        try:
            service = module.start(loop, args)
        except OSError as exc:
            raise ConfigError(describe_listen_error(exc, args.host, args.port)) from None
        # A worker's stdin is its supervisor's lifeline (see muxio.cli.graceful). The
        # signals are taken before the serving line: a SIGTERM sent on reading it is a
        # graceful stop, not the default action.
        lifeline = sys.stdin.fileno() if worker_slot() is not None else None
        stop = GracefulStop(loop, service, timeout=args.graceful_timeout, name=args.service,
                            lifeline=lifeline)
        stop.install()
        choice = loop.backend_choice
        decided = f" (decided by {choice.source})" if choice else ""
        print(f"muxio: serving {args.service} on {service.describe()} "
              f"with backend {loop.backend}{decided}", flush=True)
        stop.run()
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
