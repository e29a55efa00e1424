"""Readiness TCP vs completion-mode TCP in one process: CPU per echoed message.

    python benchmarks/uring_transport_ab.py --rounds 1500 --repeat 3

One process holds the loop and 50 plain client sockets. Each round, every client sends
100 bytes and the loop runs until all 50 echoes are back. The process's user and system
CPU per message (client side included, the same for every variant) is compared between:

- `tcp-epoll`, `tcp-epoll-et`: muxio's TCP transport on epoll, level- and edge-triggered;
- `tcp-uring`: the same transport on the uring (readiness) backend;
- `completion`: muxio.transports.uring_tcp on the uring backend.

Variants alternate in each repetition and the median is shown, so a change of machine
load hits them alike. Less noisy than a two-process benchmark on a shared host, since
nothing waits on another process's scheduling. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
from typing import Any

from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports import tcp, uring_tcp

VARIANTS = ("tcp-epoll", "tcp-epoll-et", "tcp-uring", "completion")


class Echo(Protocol):
    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def measure(variant: str, connections: int, rounds: int) -> tuple[float, float]:
    """(user, system) CPU microseconds per echoed message."""
    backend = {"tcp-epoll": "epoll", "tcp-epoll-et": "epoll-et"}.get(variant, "uring")
    with Loop(backend) as loop:
        serve: Any = uring_tcp.serve if variant == "completion" else tcp.serve
        server = serve(Echo, "127.0.0.1", 0, loop=loop)
        clients = [socket.create_connection(("127.0.0.1", server.port))
                   for _ in range(connections)]
        for client in clients:
            client.setblocking(False)
        loop.run_until(lambda: len(server.connections) == connections, timeout=20)
        message = b"x" * 100

        def one_round() -> None:
            for client in clients:
                client.send(message)
            received = [0] * connections

            def all_back() -> bool:
                for index, client in enumerate(clients):
                    if received[index] < len(message):
                        try:
                            received[index] += len(client.recv(4096))
                        except BlockingIOError:
                            pass
                return min(received) >= len(message)

            loop.run_until(all_back, timeout=20)

        for _ in range(50):  # warm-up
            one_round()
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(rounds):
            one_round()
        after = resource.getrusage(resource.RUSAGE_SELF)
        for client in clients:
            client.close()
        server.close()
        server.abort_clients()
        for _ in range(5):
            loop.run_once(0)
    messages = rounds * connections
    return ((after.ru_utime - before.ru_utime) / messages * 1e6,
            (after.ru_stime - before.ru_stime) / messages * 1e6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    samples: dict[str, list[tuple[float, float]]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            samples[variant].append(measure(variant, args.connections, args.rounds))
    print(f"{'variant':12s} {'user us/msg':>12s} {'system us/msg':>14s}  (median of "
          f"{args.repeat}; client side included)")
    for variant in VARIANTS:
        user = statistics.median(sample[0] for sample in samples[variant])
        system = statistics.median(sample[1] for sample in samples[variant])
        print(f"{variant:12s} {user:12.2f} {system:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
