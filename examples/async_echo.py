"""The echo server again, written with async/await, on the muxio backend you choose.

    python examples/async_echo.py                           # auto: the best backend here
    python examples/async_echo.py --backend epoll-et --port 7008
    echo hello | nc -q1 localhost 7008                      # -> hello (in another shell)

`muxio.aio` is an asyncio event loop over muxio's pollers and transports, so asyncio code
(streams here; aiohttp and friends too) runs unchanged on select, poll, epoll, epoll-et
and plug-ins. Ctrl-C stops it.
"""

import argparse
import asyncio

import muxio.aio


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()  # waits while the client is slow to read
    writer.close()
    await writer.wait_closed()


async def main(port: int) -> None:
    server = await asyncio.start_server(echo, "localhost", port)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    assert isinstance(loop, muxio.aio.EventLoop)
    print(f"async echo: serving on localhost:{port} with {loop.muxio_loop.backend}",
          flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="echo every byte back, with async/await")
    parser.add_argument("--backend", help="poller backend (default: auto)")
    parser.add_argument("--port", type=int, default=7008, help="0 = any free port")
    args = parser.parse_args()
    try:
        muxio.aio.run(main(args.port), backend=args.backend)
    except KeyboardInterrupt:
        pass
