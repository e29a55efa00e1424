"""Is io_uring's completion mode worth a transport? Two bare servers, measured beside muxio.

    python benchmarks/uring_completion_probe.py echo --rounds 5 --duration 3
    python benchmarks/uring_completion_probe.py http --rounds 5 --duration 3 --json out.json

Before building a completion-mode TCP transport (reads by multishot recv into a provided
buffer ring, writes as send SQEs, accepts by multishot accept, everything of an iteration
submitted with the wait), this measures the best such a path can do in Python against
the best a readiness path can do, with no transport, no protocol and no loop around them:

- `bare/epoll`: epoll_wait, then recv and send for each ready socket (level-triggered);
- `bare/uring-completion`: one io_uring_enter per iteration that submits every send of
  the previous iteration and waits; data arrives in CQEs, already received;
- `bare/uring-completion-deferred`: the same with IORING_SETUP_DEFER_TASKRUN;
- `bare/uring-recv`: reads as above, writes by a plain send() at once (no send CQE);
- `muxio/uring+completion`: the real muxio service on the uring backend with its TCP in
  completion mode (muxio.transports.uring_tcp), beside muxio's readiness backends.

Both answer the workload's traffic byte for byte like the muxio services (echo: the same
bytes back; http: muxio's hello response, with its Date header frozen), so the load
generators of `muxio bench` drive them, in the same interleaved rounds as muxio's own
servers and the peers (asyncio, uvloop). The table gives req/s (or msg/s) and server CPU
per operation split into user and system time. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import errno
import platform
import select
import signal
import socket
import sys
from pathlib import Path

HTTP_RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: muxio\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 14\r\nDate: Sun, 06 Dec 2026 19:23:33 GMT\r\n\r\n"
                 b"Hello, World!\n")


def answer(mode: str, data: bytes) -> bytes:
    if mode == "echo":
        return data
    return HTTP_RESPONSE * max(data.count(b"\r\n\r\n"), 1)


def listen(port: int) -> socket.socket:
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    listener.setblocking(False)
    print(f"serving bare on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    return listener


def serve_epoll(port: int, mode: str) -> None:
    listener = listen(port)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    while True:
        for fd, _events in poller.poll():
            if fd == listener.fileno():
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[conn.fileno()] = conn
                    poller.register(conn.fileno(), select.EPOLLIN)
                continue
            conn = conns[fd]
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                del conns[fd]
                conn.close()
                continue
            conn.send(answer(mode, data))


def serve_uring_completion(port: int, mode: str, extra_flags: int = 0) -> None:
    from muxio.pollers.uring_buffers import BufferRing, bytes_address
    from muxio.pollers.uring_ring import IORING_CQE_BUFFER_SHIFT, IORING_CQE_F_MORE, Ring

    accept_data, recv_tag, send_tag = 1 << 62, 1 << 61, 1 << 60
    listener = listen(port)
    ring = Ring(sq_entries=1024, cq_entries=16384, extra_flags=extra_flags)
    buffers = BufferRing(ring, group=0, count=1024, size=4096)
    flags = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    ring.prep_accept_multishot(listener.fileno(), flags, accept_data)
    conns: dict[int, socket.socket] = {}
    in_flight: dict[int, bytes] = {}
    sequence = 0
    send_flags = socket.MSG_NOSIGNAL | socket.MSG_WAITALL
    take = buffers.take
    while True:
        for user_data, res, cqe_flags in ring.submit_and_wait(None):
            if user_data & recv_tag:
                fd = user_data & 0xFFFFFFFF
                if res > 0:
                    reply = answer(mode, take(cqe_flags >> IORING_CQE_BUFFER_SHIFT, res))
                    sequence += 1
                    tag = send_tag | (sequence << 32) | fd
                    in_flight[tag] = reply
                    ring.prep_send(fd, bytes_address(reply), len(reply), send_flags, tag)
                    if not cqe_flags & IORING_CQE_F_MORE:
                        ring.prep_recv_multishot(fd, 0, user_data)
                elif res == -errno.ENOBUFS:
                    ring.prep_recv_multishot(fd, 0, user_data)  # buffers came back since
                elif fd in conns:
                    conns.pop(fd).close()  # EOF or an error
            elif user_data & send_tag:
                reply = in_flight.pop(user_data)
                fd = user_data & 0xFFFFFFFF
                if res != len(reply) and fd in conns:
                    conns.pop(fd).close()
            elif user_data == accept_data:
                if res >= 0:
                    conn = socket.socket(fileno=res)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[res] = conn
                    ring.prep_recv_multishot(res, 0, recv_tag | res)
                if not cqe_flags & IORING_CQE_F_MORE:
                    ring.prep_accept_multishot(listener.fileno(), flags, accept_data)


def serve_uring_recv(port: int, mode: str) -> None:
    """Reads as completions (multishot recv into the buffer ring), writes as plain send:
    no send CQE to process and no reference to keep, one system call less per request
    than readiness (the recv), none more."""
    from muxio.pollers.uring_buffers import BufferRing
    from muxio.pollers.uring_ring import IORING_CQE_BUFFER_SHIFT, IORING_CQE_F_MORE, Ring

    accept_data, recv_tag = 1 << 62, 1 << 61
    listener = listen(port)
    ring = Ring(sq_entries=1024, cq_entries=16384)
    buffers = BufferRing(ring, group=0, count=1024, size=4096)
    flags = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    ring.prep_accept_multishot(listener.fileno(), flags, accept_data)
    conns: dict[int, socket.socket] = {}
    take = buffers.take
    while True:
        for user_data, res, cqe_flags in ring.submit_and_wait(None):
            if user_data & recv_tag:
                fd = user_data & 0xFFFFFFFF
                if res > 0:
                    conns[fd].send(answer(mode, take(cqe_flags >> IORING_CQE_BUFFER_SHIFT,
                                                     res)))
                    if not cqe_flags & IORING_CQE_F_MORE:
                        ring.prep_recv_multishot(fd, 0, user_data)
                elif res == -errno.ENOBUFS:
                    ring.prep_recv_multishot(fd, 0, user_data)
                elif fd in conns:
                    conns.pop(fd).close()
            elif user_data == accept_data:
                if res >= 0:
                    conn = socket.socket(fileno=res)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[res] = conn
                    ring.prep_recv_multishot(res, 0, recv_tag | res)
                if not cqe_flags & IORING_CQE_F_MORE:
                    ring.prep_accept_multishot(listener.fileno(), flags, accept_data)


def serve_uring_completion_deferred(port: int, mode: str) -> None:
    """As uring-completion, with IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN: the kernel
    runs the completion work of the whole batch inside the one io_uring_enter."""
    from muxio.pollers.uring_ring import IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_SINGLE_ISSUER

    serve_uring_completion(port, mode, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)


def serve_muxio_completion(port: int, mode: str) -> None:
    """`muxio serve echo|http --backend uring` with its TCP in completion mode: the real
    handler on muxio.transports.uring_tcp. The services call `tcp.serve`, which is not
    wired to completion mode (it is opt-in), so this process points their `tcp` at it."""
    import types

    from muxio.cli import main as cli
    from muxio.cli.services import echo, http
    from muxio.transports import uring_tcp

    shim = types.SimpleNamespace(serve=uring_tcp.serve)
    echo.tcp = shim  # type: ignore[assignment]
    http.tcp = shim  # type: ignore[assignment]
    sys.exit(cli.main(["serve", mode, "--host", "127.0.0.1", "--port", str(port),
                       "--backend", "uring"]))


IMPLEMENTATIONS = {"epoll": serve_epoll, "uring-completion": serve_uring_completion,
                   "uring-completion-deferred": serve_uring_completion_deferred,
                   "uring-recv": serve_uring_recv}
MUXIO_IMPLEMENTATIONS = {"muxio-completion": serve_muxio_completion}


def compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from muxio.bench.runner import Target, muxio_target, peer_target, run_comparison, to_json
    from muxio.bench.workloads import WORKLOADS
    from muxio.cli.bench import render_table

    workload = WORKLOADS[args.workload]
    here = str(Path(__file__).resolve())
    targets = [peer_target(peer, workload.service, workload.service_args)
               for peer in args.peers.split(",") if peer]
    targets += [muxio_target(backend, workload.service, workload.service_args)
                for backend in args.backends.split(",") if backend]
    targets += [Target(f"muxio/uring+{impl.split('-')[1]}", (
        sys.executable, here, "serve", "--impl", impl, "--mode", args.workload), "muxio")
                for impl in MUXIO_IMPLEMENTATIONS]
    if args.bare:
        targets += [Target(f"bare/{impl}", (sys.executable, here, "serve", "--impl", impl,
                                            "--mode", args.workload), "bare")
                    for impl in IMPLEMENTATIONS]
    results = run_comparison(workload, targets, rounds=args.rounds, duration=args.duration)
    console = Console(width=140)
    console.print(render_table(workload.unit, results, args.reference))
    if args.json:
        meta = {"python": platform.python_version(), "rounds": args.rounds,
                "duration": args.duration}
        args.json.write_text(to_json(workload, results, args.reference, meta))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one bare server (used by the comparison)")
    serve.add_argument("--impl", choices=sorted({**IMPLEMENTATIONS, **MUXIO_IMPLEMENTATIONS}),
                       required=True)
    serve.add_argument("--mode", choices=("echo", "http"), required=True)
    serve.add_argument("--port", type=int, default=0)
    for workload in ("echo", "http"):
        run = sub.add_parser(workload, help=f"compare on `muxio bench {workload}` traffic")
        run.add_argument("--rounds", type=int, default=3)
        run.add_argument("--duration", type=float, default=3.0)
        run.add_argument("--backends", default="epoll,uring")
        run.add_argument("--peers", default="asyncio,uvloop")
        run.add_argument("--reference", default="asyncio")
        run.add_argument("--json", type=Path, default=None)
        run.add_argument("--no-bare", dest="bare", action="store_false",
                         help="only muxio and the peers (no bare servers)")
        run.set_defaults(workload=workload)
    args = parser.parse_args()
    if args.command == "serve":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        {**IMPLEMENTATIONS, **MUXIO_IMPLEMENTATIONS}[args.impl](args.port, args.mode)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
