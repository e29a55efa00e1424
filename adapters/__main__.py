"""`python -m adapters --loop asyncio|uvloop|twisted --service echo --port P`.

Runs a muxio service's handler on a peer event loop, for side-by-side benchmarks.
The service module must provide `protocol_factory(scheduler, args)`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from muxio.cli.services import SERVICES
from muxio.cli.tls_options import server_context_from
from muxio.errors import MuxioError
from muxio.protocols import ProtocolFactory, Scheduler

LOOPS = ("asyncio", "uvloop", "twisted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters")
    parser.add_argument("--loop", choices=LOOPS, required=True)
    parser.add_argument("--service", choices=sorted(SERVICES), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
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
    try:
        tls = server_context_from(service_args)  # --tls-cert: the peer loop's own TLS
    except MuxioError as exc:
        parser.error(str(exc))
    if tls is not None and known.loop == "twisted":
        parser.error("--tls-cert is not supported on twisted here (its TLS needs pyOpenSSL); "
                     "use --loop asyncio or uvloop")

    def build(scheduler: Scheduler) -> ProtocolFactory:
        factory: ProtocolFactory = module.protocol_factory(scheduler, service_args)
        return factory

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
                         handshake_timeout=getattr(service_args, "tls_handshake_timeout",
                                                   None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
