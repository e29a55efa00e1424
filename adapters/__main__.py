"""`python -m adapters --loop asyncio|uvloop|twisted --service echo --port P [options]`.

Runs a muxio handler on a peer event loop, for side-by-side benchmarks and for tests that
check the same handler behaves the same everywhere. The handler comes from its package's
hosting shape (`muxio.handlers`: options, `config_from`, `protocol_factory(scheduler,
config)`, ALPN), exactly as `muxio serve` gets it, never from `muxio serve`'s service
modules. With --tls-cert the peer loop runs its own TLS (the peer column of
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

LOOPS = ("asyncio", "uvloop", "twisted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters")
    parser.add_argument("--loop", choices=LOOPS, required=True)
    parser.add_argument("--service", choices=sorted(HANDLERS), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
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
    if tls is not None and known.loop == "twisted":
        parser.error("--tls-cert is not supported on twisted here (its TLS needs pyOpenSSL); "
                     "use --loop asyncio or uvloop")
    logging.basicConfig(level=logging.WARNING)

    def build(scheduler: Scheduler) -> ProtocolFactory:
        return handler.protocol_factory(scheduler, config)

    def ready(addresses: str) -> None:
        print(f"adapters: serving {known.service} on {addresses} with {known.loop}",
              flush=True)

    if known.loop == "twisted":
        from adapters import twisted_host

        twisted_host.run(build, known.host, known.port, ready)
    else:
        from adapters import asyncio_host

        asyncio_host.run(build, known.host, known.port, ready,
                         use_uvloop=known.loop == "uvloop", tls=tls,
                         handshake_timeout=service_args.tls_handshake_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
