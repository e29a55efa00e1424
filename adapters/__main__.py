"""`python -m adapters --loop asyncio|uvloop|twisted|threads --service echo --port P [options]`.

Runs a muxio handler on a peer event loop, for side-by-side benchmarks and for tests that
check the same handler behaves the same everywhere. The handler comes from its package's
hosting shape (`muxio.handlers`: options, `config_from`, `protocol_factory(scheduler,
config)`, ALPN), exactly as `muxio serve` gets it, never from `muxio serve`'s service
modules. `threads` hosts it on a thread per connection over blocking sockets
(adapters/threads_host). With --tls-cert the peer loop runs its own TLS (the peer column of
`muxio bench ... --tls`); those flags are the ones `muxio serve` takes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from muxio.cli.tls_options import add_server_arguments, server_context_from
from muxio.errors import MuxioError
from muxio.handlers import HANDLERS, hosted_handler
from muxio.protocols import ProtocolFactory, Scheduler

LOOPS = ("asyncio", "uvloop", "twisted", "threads")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters")
    parser.add_argument("--loop", choices=LOOPS, required=True)
    parser.add_argument("--service", choices=sorted(HANDLERS), required=True)
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
    handler = hosted_handler(known.service)
    service_parser = argparse.ArgumentParser(prog=f"python -m adapters --service {known.service}")
    handler.add_arguments(service_parser)
    add_server_arguments(service_parser, alpn=handler.ALPN)
    service_args = service_parser.parse_args(rest)
    try:
        config = handler.config_from(service_args)
        tls = server_context_from(service_args)  # --tls-cert: the peer loop's own TLS
    except (ValueError, MuxioError) as exc:
        service_parser.error(str(exc))
    if tls is not None and known.loop in ("twisted", "threads"):
        parser.error(f"--tls-cert is not supported on {known.loop} here; "
                     "use --loop asyncio or uvloop")
    logging.basicConfig(level=logging.WARNING)

    def build(scheduler: Scheduler) -> ProtocolFactory:
        return handler.protocol_factory(scheduler, config)

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
                         use_uvloop=known.loop == "uvloop", tls=tls,
                         handshake_timeout=service_args.tls_handshake_timeout,
                         backlog=known.backlog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
