"""An HTTP app: two routes and a static directory, on the muxio loop.

    python examples/http_app.py --port 8000
    curl localhost:8000/hello                 # -> Hello from muxio on epoll!
    curl -d 'some bytes' localhost:8000/echo  # -> some bytes
    curl localhost:8000/                      # -> examples/static/index.html

An app is any function from `Request` to `Response`; a `Router` dispatches on path then
method (unknown path: 404, other method: 405) and `StaticFiles` serves a directory (GET and
HEAD, ranges, conditional requests). The app runs in the loop: it must not block.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import muxio
from muxio.handlers.http import Request, Response, Router, StaticFiles, http_protocol_factory

STATIC = Path(__file__).parent / "static"


def make_app(backend: str) -> Router:
    router = Router()

    @router.route("/hello")
    def hello(request: Request) -> Response:
        return Response.text(f"Hello from muxio on {backend}!\n")

    @router.route("/echo", methods=("POST",))
    def echo(request: Request) -> Response:
        return Response(200, [("Content-Type", "application/octet-stream")], request.body)

    router.add("/", StaticFiles(STATIC), prefix=True)
    return router


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="an HTTP app with routes and static files")
    parser.add_argument("--backend", help="poller backend (default: auto)")
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port")
    args = parser.parse_args()
    with muxio.Loop(args.backend) as loop:
        # The HTTP handler takes its timers (header, keep-alive timeouts) from the loop.
        factory = http_protocol_factory(make_app(loop.backend), loop)
        server = muxio.serve(factory, "localhost", args.port, loop=loop)
        print(f"http: serving on localhost:{server.port} with {loop.backend}", flush=True)
        server.serve_forever()
