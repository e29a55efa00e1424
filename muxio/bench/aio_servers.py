"""Servers written for asyncio, hosted on asyncio's loop, uvloop or muxio.aio: the targets
of the `aio-echo` and `aio-http` workloads of `muxio bench`.

    python -m muxio.bench.aio_servers --app echo --loop muxio --backend epoll --port 7007
    python -m muxio.bench.aio_servers --app aiohttp --loop uvloop --port 8080

The same application code runs on every loop; only the loop differs. `echo` is an
asyncio-streams echo server (`asyncio.start_server`, read / write / drain), `aiohttp` an
aiohttp web application answering GET / with "Hello, World!". Prints one line
"serving APP on HOST:PORT with LOOP" once it accepts connections, and stops on SIGTERM
or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

LOOPS = ("asyncio", "uvloop", "muxio")
APPS = ("echo", "aiohttp")
READ_SIZE = 64 * 1024
HELLO = "Hello, World!"


async def echo_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def start_echo(host: str, port: int) -> Callable[[], Awaitable[None]]:
    server = await asyncio.start_server(echo_client, host, port, reuse_address=True)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


async def start_aiohttp(host: str, port: int) -> Callable[[], Awaitable[None]]:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=HELLO)

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    cleanup: Callable[[], Awaitable[None]] = runner.cleanup
    return cleanup


STARTERS: dict[str, Callable[[str, int], Awaitable[Callable[[], Awaitable[None]]]]] = {
    "echo": start_echo, "aiohttp": start_aiohttp}


async def serve(app: str, host: str, port: int, loop_name: str) -> None:
    stop = await STARTERS[app](host, port)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    print(f"serving {app} on {host}:{port} with {loop_name}", flush=True)
    await stopped.wait()
    await stop()


def run_on(loop_name: str, backend: str | None, main: Coroutine[Any, Any, None]) -> None:
    if loop_name == "uvloop":
        import uvloop

        uvloop.run(main)
    elif loop_name == "muxio":
        import muxio.aio

        muxio.aio.run(main, backend=backend)
    else:
        asyncio.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m muxio.bench.aio_servers",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=APPS, required=True)
    parser.add_argument("--loop", choices=LOOPS, required=True)
    parser.add_argument("--backend", default=None, help="muxio backend (with --loop muxio)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.backend is not None and args.loop != "muxio":
        parser.error("--backend applies to --loop muxio only")
    name = args.loop if args.loop != "muxio" else f"muxio.aio/{args.backend or 'auto'}"
    run_on(args.loop, args.backend, serve(args.app, args.host, args.port, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
