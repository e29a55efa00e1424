"""An echo server in 20 lines, on the poller backend you choose.

    python examples/echo_server.py                          # auto: the best backend here
    python examples/echo_server.py --backend poll --port 7007
    echo hello | nc -q1 localhost 7007                      # -> hello (in another shell)

Ctrl-C stops it. `muxio backends` lists the backend names.
"""

import argparse

import muxio


class Echo(muxio.Protocol):
    def connection_made(self, transport: muxio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="echo every byte back")
    parser.add_argument("--backend", help="poller backend (default: auto)")
    parser.add_argument("--port", type=int, default=7007, help="0 = any free port")
    args = parser.parse_args()
    server = muxio.serve(Echo, "localhost", args.port, backend=args.backend)
    print(f"echo: serving on localhost:{server.port} with {server.loop.backend}", flush=True)
    server.serve_forever()
