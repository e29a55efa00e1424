"""Chat-forward load: N sender/receiver pairs through a chat server, 100-byte messages.

    python -m muxio.bench.loadgen_chat --port 7010 --pairs 10 --window 32 --duration 3

2N clients connect and greet (HELLO); each sender then keeps `--window` SEND requests in
flight to its own receiver (a new one per SEND_OK), and receivers count MESSAGE
indications. Prints one JSON line: {"messages": N, "seconds": T} (MESSAGEs delivered end
to end while sending). Runs on muxio's own loop (epoll) with a lean client that counts
frames by type code, so that the generator is not the bottleneck. A SEND answered with
ERROR fails the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from muxio.bench.runner import BenchError
from muxio.handlers.chat import (
    Frame,
    FrameDecoder,
    Hello,
    HelloOk,
    MessageType,
    Pong,
    Send,
    decode,
    encode,
)
from muxio.loop import Loop
from muxio.protocols import Protocol, Transport
from muxio.transports import tcp

TEXT = "x" * 100
_SEND_OK = MessageType.SEND_OK
_MESSAGE = MessageType.MESSAGE
_ERROR = MessageType.ERROR
_PING = MessageType.PING
_HELLO_OK = MessageType.HELLO_OK


class LoadClient(Protocol):
    """A lean chat client: greets, then counts frames by type (no object per frame)."""

    def __init__(self) -> None:
        self.transport: Transport | None = None
        self.decoder = FrameDecoder(1 << 20)
        self.client_id = 0
        self.messages = 0
        self.acks = 0
        self.errors = 0
        self.lost = False
        self.send_frame = b""
        self.sending = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        transport.write(encode(Hello(request_id=1)))

    def data_received(self, data: bytes) -> None:
        decoder = self.decoder
        decoder.feed(data)
        acks = 0
        while True:
            frame = decoder.next_frame()
            if not isinstance(frame, Frame):
                break
            kind = frame.type_code
            if kind == _SEND_OK:
                acks += 1
            elif kind == _MESSAGE:
                self.messages += 1
            elif kind == _PING:
                self._write(encode(Pong(request_id=frame.request_id)))
            elif kind == _ERROR:
                self.errors += 1
            elif kind == _HELLO_OK:
                hello = decode(*frame)
                assert isinstance(hello, HelloOk)
                self.client_id = hello.client_id
        if acks:
            self.acks += acks
            if self.sending:
                self._write(self.send_frame * acks)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def start(self, to: int, window: int) -> None:
        self.send_frame = encode(Send(request_id=7, to=to, text=TEXT))
        self.sending = True
        self._write(self.send_frame * window)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


@dataclass
class ChatRun:
    messages: int
    seconds: float


def run_pairs(loop: Loop, port: int, pairs: int, *, window: int, seconds: float,
              warmup: float = 0.0, on_measure_start: Callable[[], None] | None = None,
              on_measure_end: Callable[[], None] | None = None,
              host: str = "127.0.0.1", receiver_port: int | None = None,
              pair_ports: Sequence[int] = ()) -> ChatRun:
    """Connect 2 * `pairs` clients, forward for `warmup` + `seconds`, count the MESSAGEs of
    the measured part; the hooks run right at its start and end (CPU sampling). Servers
    of one chat bus: with `receiver_port`, the receivers connect there; with `pair_ports`,
    pair i (sender and receiver) connects to pair_ports[i % len(pair_ports)]."""
    clients = [LoadClient() for _ in range(2 * pairs)]
    for index, client in enumerate(clients):
        if pair_ports:
            to_port = pair_ports[(index % pairs) % len(pair_ports)]
        else:
            to_port = port if receiver_port is None or index < pairs else receiver_port
        tcp.connect(lambda client=client: client, host, to_port,  # type: ignore[misc]
                    loop=loop)
    loop.run_until(lambda: all(client.client_id for client in clients), timeout=60)
    senders, receivers = clients[:pairs], clients[pairs:]
    for sender, receiver in zip(senders, receivers, strict=True):
        sender.start(receiver.client_id, window)

    def pause(duration: float) -> None:
        done: list[bool] = []
        loop.call_later(duration, done.append, True)
        loop.run_until(lambda: bool(done), timeout=duration + 60)

    if warmup > 0:
        pause(warmup)
    received_before = sum(receiver.messages for receiver in receivers)
    if on_measure_start is not None:
        on_measure_start()
    started = time.monotonic()
    pause(seconds)
    elapsed = time.monotonic() - started
    if on_measure_end is not None:
        on_measure_end()
    received = sum(receiver.messages for receiver in receivers) - received_before
    errors = sum(client.errors for client in clients)
    for client in clients:
        client.sending = False
        if client.transport is not None:
            client.transport.abort()
    loop.run_until(lambda: all(client.lost for client in clients), timeout=60)
    if errors:
        raise BenchError(f"{errors} SEND requests failed (ERROR)")
    if received <= 0:
        raise BenchError("no message was forwarded")
    return ChatRun(received, elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--window", type=int, default=32,
                        help="SEND requests in flight per sender")
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args(argv)
    with Loop("epoll") as loop:
        run = run_pairs(loop, args.port, args.pairs, window=args.window,
                        seconds=args.duration, host=args.host)
    print(json.dumps({"messages": run.messages, "seconds": run.seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
