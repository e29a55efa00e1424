"""`python -m adapters --loop asyncio|uvloop|twisted --service echo --port P [options]`.

Runs a muxio handler on a peer event loop, for side-by-side benchmarks and for tests that
check the same handler behaves the same everywhere. The handler comes from its package's
hosting shape (`muxio.handlers`: options, `config_from`, `protocol_factory(scheduler,
config)`), exactly as `muxio serve` gets it; nothing here goes through `muxio.cli`.
"""

from __future__ import annotations

import argparse
import logging
import sys

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
    try:
        config = handler.config_from(service_parser.parse_args(rest))
    except ValueError as exc:
        service_parser.error(str(exc))
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
                         use_uvloop=known.loop == "uvloop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
