"""What the TLS layer costs on top of what `ssl` itself needs, per record.

    python benchmarks/tls_layer_cost.py                 # 100-byte and 16 KiB records
    python benchmarks/tls_layer_cost.py --records 200000 --sizes 100,1000,16384

Two TLS 1.3 sessions in memory, no sockets, no loop:

- floor: the least any MemoryBIO TLS must do per record: SSLObject.write, outgoing
  BIO read, incoming BIO write, SSLObject.read (one bytes object per step that has one);
- layer: muxio's TlsTransport on both sides, joined by an inner "transport" that hands
  each write straight to the other side's data_received, with a handler that counts.

The difference is the layer's own cost (Python calls, state checks). Objects: per record
both make the same bytes objects (the records read from the outgoing BIO, the plaintext
SSLObject.read returns); the layer adds a join only when one inner read carries several
records (one bytes for the handler instead of several calls). "live blocks/record" is
sys.getallocatedblocks() growth over a run divided by its records: 0 means nothing is
retained per record. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

from muxio.bench.tls_certs import ThrowawayPki
from muxio.protocols import Protocol
from muxio.transports.tls import TlsTransport


class Direct:
    """An inner transport that delivers each write to the peer at once."""

    def __init__(self) -> None:
        self.peer: Any = None

    def write(self, data: bytes) -> None:
        self.peer.data_received(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"transport": "direct", "peername": "peer"}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class Counter(Protocol):
    def __init__(self) -> None:
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)


class NoTimers:
    """A scheduler whose timers never fire (the handshake finishes synchronously)."""

    class _Handle:
        def cancel(self) -> None:
            pass

    def time(self) -> float:
        return time.monotonic()

    def call_soon(self, callback: Callable[..., object], *args: object) -> _Handle:
        callback(*args)
        return self._Handle()

    def call_later(self, delay: float, callback: Callable[..., object],
                   *args: object) -> _Handle:
        return self._Handle()


def contexts(pki: ThrowawayPki) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    return server_context, pki.client_context()


def layer_pair(server_context: ssl.SSLContext,
               client_context: ssl.SSLContext) -> tuple[TlsTransport, Counter]:
    counter = Counter()
    scheduler = NoTimers()
    client = TlsTransport(client_context, scheduler, server_side=False,
                          app_protocol=Protocol(), server_hostname="localhost")
    server = TlsTransport(server_context, scheduler, server_side=True,
                          app_factory=lambda: counter)
    to_server, to_client = Direct(), Direct()
    to_server.peer, to_client.peer = server, client
    server.connection_made(to_client)  # type: ignore[arg-type]
    client.connection_made(to_server)  # type: ignore[arg-type]
    assert client.state == "open" and server.state == "open", (client, server)
    return client, counter


def floor_pair(server_context: ssl.SSLContext,
               client_context: ssl.SSLContext) -> tuple[Callable[[bytes], int], ssl.SSLObject]:
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(4):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    try:
        server.read(16384)  # the client's session tickets are read on the client side
    except ssl.SSLWantReadError:
        pass
    try:
        client.read(16384)
    except ssl.SSLWantReadError:
        pass

    def send(payload: bytes) -> int:
        client.write(payload)
        s_in.write(c_out.read())
        return len(server.read(16384))

    return send, server


def per_record(run: Callable[[], None], records: int, repeats: int) -> float:
    """Least CPU µs per record over `repeats` runs of `records` records (process CPU time
    and the minimum: on a shared machine, waiting and other tenants only ever add)."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append((time.process_time() - started) / records * 1e6)
    return min(times)


def live_growth(run: Callable[[], None]) -> int:
    """Python memory blocks still allocated after `run` that were not before."""
    before = sys.getallocatedblocks()
    run()
    return sys.getallocatedblocks() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sizes", default="100,16384")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        pki = ThrowawayPki.create(Path(directory))
        server_context, client_context = contexts(pki)
    client, counter = layer_pair(server_context, client_context)
    send, _ = floor_pair(server_context, client_context)
    handshakes = max(100, args.records // 500)
    floor_handshake = per_record(lambda: [floor_pair(server_context, client_context)
                                          for _ in range(handshakes)], handshakes, args.repeats)
    layer_handshake = per_record(lambda: [layer_pair(server_context, client_context)
                                          for _ in range(handshakes)], handshakes, args.repeats)
    print(f"full handshake, both sides (ECDSA P-256, TLS 1.3): floor {floor_handshake:.0f} "
          f"µs, layer {layer_handshake:.0f} µs, layer cost {layer_handshake - floor_handshake:.0f} "
          f"µs")
    print(f"{'record':>8}  {'floor µs':>9}  {'layer µs':>9}  {'layer cost µs':>13}  "
          f"{'live blocks/record':>18}")
    for size in (int(text) for text in args.sizes.split(",")):
        payload = b"x" * size
        records = args.records if size <= 1024 else max(1000, args.records // 10)

        def floor_run(payload: bytes = payload, records: int = records) -> None:
            for _ in range(records):
                send(payload)

        def layer_run(payload: bytes = payload, records: int = records) -> None:
            write = client.write
            for _ in range(records):
                write(payload)

        floor_run()  # warm up
        layer_run()
        floor = per_record(floor_run, records, args.repeats)
        layer = per_record(layer_run, records, args.repeats)
        growth = live_growth(layer_run) / records
        print(f"{size:>8}  {floor:>9.2f}  {layer:>9.2f}  {layer - floor:>13.2f}  "
              f"{growth:>18.3f}")
    assert counter.received > 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
