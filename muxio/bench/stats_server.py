"""`muxio serve`, plus the poller's statistics on request, for `muxio bench models`.

    python -m muxio.bench.stats_server echo --backend epoll-et --host 127.0.0.1 --port 7007

Serves like `muxio serve SERVICE` and prints "muxio: serving ..." when ready. Each SIGUSR1
prints one JSON line of the loop's poller statistics ({"polls": ..., "events": ...,
"registered_fds": ..., "backend": ..., "edge_triggered": ...}), so the runner can take the
difference over a measured window: wakeups (polls) and readiness events per message, the
figures that tell level- from edge-triggered epoll. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import signal
import sys

from muxio.cli.services import SERVICES, ServiceModule
from muxio.loop import Loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m muxio.bench.stats_server")
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("--backend", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=None)
    known, rest = parser.parse_known_args(argv)
    module: ServiceModule = importlib.import_module(SERVICES[known.service])
    service_parser = argparse.ArgumentParser(prog=f"... {known.service}")
    module.add_arguments(service_parser)
    args = service_parser.parse_args(rest)
    args.host, args.port, args.backlog, args.reuse_port = (known.host, known.port,
                                                           known.backlog, False)
    with Loop(known.backend) as loop:
        service = module.start(loop, args)

        def report() -> None:
            stats = dataclasses.asdict(loop.statistics())
            print(json.dumps(stats), flush=True)

        loop.add_signal_handler(signal.SIGUSR1, report)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, loop.stop)
        print(f"muxio: serving {known.service} on {service.describe()} with backend "
              f"{loop.backend}", flush=True)
        loop.run_forever()
        service.close()
        for _ in range(3):
            loop.run_once(0)
        for signum in (signal.SIGUSR1, signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
