"""`python -m adapters --loop asyncio|uvloop|twisted|threads --service echo --port P`.

Runs a muxio service's handler on a peer event loop, or on a thread per connection
(`threads`: blocking sockets, see adapters/threads_host.py), for side-by-side benchmarks.
The service module must provide `protocol_factory(scheduler, args)`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from muxio.cli.services import SERVICES
from muxio.protocols import ProtocolFactory, Scheduler

LOOPS = ("asyncio", "uvloop", "twisted", "threads")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters")
    parser.add_argument("--loop", choices=LOOPS, required=True)
    parser.add_argument("--service", choices=sorted(SERVICES), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=None,
                        help="listen backlog for asyncio, uvloop and threads (default: "
                             "asyncio's 100 on asyncio/uvloop, somaxconn on threads)")
    threads = parser.add_argument_group("--loop threads")
    threads.add_argument("--lock", choices=("server", "connection"), default="server",
                         help="serialise handler callbacks with one lock per server "
                              "(default; handlers may share state) or one per connection "
                              "(only for handlers whose connections share nothing)")
    threads.add_argument("--max-threads", type=int, default=None, metavar="N",
                         help="serve at most N connections at once; later clients wait in "
                              "the listen backlog (default: no cap)")
    threads.add_argument("--stack-size", type=int, default=None, metavar="KIB",
                         help="stack of each thread in KiB (default: "
                              "threads_host.DEFAULT_STACK_SIZE)")
    known, rest = parser.parse_known_args(argv)
    module: Any = importlib.import_module(SERVICES[known.service])
    if not hasattr(module, "protocol_factory"):
        parser.error(f"service {known.service!r} cannot be hosted on a peer loop "
                     f"(its module has no protocol_factory)")
    service_parser = argparse.ArgumentParser(prog=f"... --service {known.service}")
    module.add_arguments(service_parser)
    service_args = service_parser.parse_args(rest)
    service_args.host, service_args.port = known.host, known.port
    logging.basicConfig(level=logging.WARNING)

    def build(scheduler: Scheduler) -> ProtocolFactory:
        factory: ProtocolFactory = module.protocol_factory(scheduler, service_args)
        return factory

    def ready(addresses: str) -> None:
        print(f"adapters: serving {known.service} on {addresses} with {known.loop}",
              flush=True)

    if known.loop == "threads":
        from adapters import threads_host

        if known.max_threads is not None and known.max_threads < 1:
            parser.error(f"--max-threads must be >= 1, got {known.max_threads}")
        if known.stack_size is not None and known.stack_size < 32:
            parser.error(f"--stack-size is in KiB and must be >= 32 (the smallest stack "
                         f"Python accepts), got {known.stack_size}")
        stack_size = threads_host.DEFAULT_STACK_SIZE if known.stack_size is None else (
            known.stack_size * 1024)
        threads_host.run(build, known.host, known.port, ready, lock=known.lock,
                         backlog=known.backlog, max_threads=known.max_threads,
                         stack_size=stack_size)
    elif known.loop == "twisted":
        from adapters import twisted_host

        twisted_host.run(build, known.host, known.port, ready)
    else:
        from adapters import asyncio_host

        asyncio_host.run(build, known.host, known.port, ready,
                         use_uvloop=known.loop == "uvloop", backlog=known.backlog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
