"""The application interface: a function from `Request` to `Response`, and a router.

    router = Router()

    @router.route("/hello", methods=("GET",))
    def hello(request: Request) -> Response:
        return Response.text("hi\\n")

    factory = http_protocol_factory(router, scheduler)   # protocol.py

An app is any callable `(Request) -> Response`. It runs in the event loop, so it must not
block; the request body is complete (and at most `HttpConfig.max_body_size`) when it is
called. `Router` dispatches on the path (exact, or a prefix ending in "/"), then on the
method: an unknown path is 404; a known path with another method is 405 with `Allow`
(and the connection is closed, since a method we do not route may frame its message in
ways we do not handle). HEAD is allowed wherever GET is; the server drops the body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from muxio.handlers.http.messages import Request, Response

App = Callable[[Request], Response]


class _Route:
    __slots__ = ("handlers", "not_allowed")

    def __init__(self) -> None:
        self.handlers: dict[str, App] = {}
        self.not_allowed = Response()

    def add(self, methods: Iterable[str], handler: App) -> None:
        for name in methods:
            method = name.upper()
            if method in self.handlers:
                raise ValueError(f"method {method} is routed twice on the same path")
            self.handlers[method] = handler
        if "GET" in self.handlers and "HEAD" not in self.handlers:
            self.handlers["HEAD"] = self.handlers["GET"]
        allow = ", ".join(sorted(self.handlers))
        self.not_allowed = Response.text(f"405 Method Not Allowed: use {allow}\n", 405,
                                         headers=(("Allow", allow),), close=True)


NOT_FOUND = Response.text("404 Not Found\n", 404)


class Router:
    """Routes by path, then method. Exact paths win over prefixes; longer prefixes win."""

    __slots__ = ("_exact", "_prefixes", "exact_handlers")

    def __init__(self) -> None:
        self._exact: dict[str, _Route] = {}
        self._prefixes: list[tuple[str, _Route]] = []
        self.exact_handlers: dict[str, dict[str, App]] = {}
        """path -> {method: handler} for the exact routes (read it; `add` keeps it). The
        HTTP shell looks a request up here itself, two dict hits, and calls the router
        only for what is not there (prefixes, 404, 405): the same answer, one Python
        call fewer per request."""

    def add(self, path: str, handler: App, methods: Iterable[str] = ("GET",), *,
            prefix: bool = False) -> None:
        """Route `methods` on `path` to `handler`; `prefix=True` matches every path that
        starts with `path` (which must then end with "/")."""
        if not path.startswith("/"):
            raise ValueError(f"route paths start with '/', got {path!r}")
        if prefix:
            if not path.endswith("/"):
                raise ValueError(f"a prefix route ends with '/', got {path!r}")
            for existing, route in self._prefixes:
                if existing == path:
                    route.add(methods, handler)
                    return
            route = _Route()
            route.add(methods, handler)
            self._prefixes.append((path, route))
            self._prefixes.sort(key=lambda entry: len(entry[0]), reverse=True)
        else:
            route = self._exact.setdefault(path, _Route())
            route.add(methods, handler)
            self.exact_handlers[path] = route.handlers

    def route(self, path: str, methods: Iterable[str] = ("GET",), *,
              prefix: bool = False) -> Callable[[App], App]:
        """Decorator form of `add`."""
        def register(handler: App) -> App:
            self.add(path, handler, methods, prefix=prefix)
            return handler
        return register

    def __call__(self, request: Request) -> Response:
        route = self._exact.get(request.path)
        if route is None:
            path = request.path
            for start, candidate in self._prefixes:
                if path.startswith(start):
                    route = candidate
                    break
            else:
                return NOT_FOUND
        handler = route.handlers.get(request.method)
        if handler is None:
            return route.not_allowed
        return handler(request)


HELLO_BODY = b"Hello, World!\n"
HELLO = Response(200, (("Content-Type", "text/plain"),), HELLO_BODY)
"""The benchmark target's answer: built once, its header block encoded once."""


def hello(request: Request) -> Response:
    return HELLO


def hello_app() -> Router:
    """`GET /` (and HEAD) answers `Hello, World!`; anything else is 404 or 405."""
    router = Router()
    router.add("/", hello, ("GET",))
    return router
