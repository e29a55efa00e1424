"""Ways in: `new_event_loop`, `run` and an event loop policy, as uvloop offers them.

Prefer `run(main(), backend=...)` or `asyncio.Runner(loop_factory=new_event_loop)`:
asyncio's policy system is deprecated from Python 3.14. The policy is there for code
and test suites that create loops through `asyncio.new_event_loop()`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from functools import partial
from typing import Any, TypeVar

from muxio.aio.loop import EventLoop
from muxio.loop import Loop

T = TypeVar("T")


def new_event_loop(backend: str | None = None, *, muxio_loop: Loop | None = None) -> EventLoop:
    """A new asyncio event loop on muxio's `backend` (None: MUXIO_BACKEND, the config
    file, then the best available, as for `muxio.loop.Loop`)."""
    return EventLoop(backend, muxio_loop=muxio_loop)


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, with loops from `new_event_loop(backend)`."""

    def __init__(self, backend: str | None = None) -> None:
        super().__init__()
        self.backend = backend

    def new_event_loop(self) -> EventLoop:
        return EventLoop(self.backend)


def run(main: Coroutine[Any, Any, T], *, backend: str | None = None,
        debug: bool | None = None) -> T:
    """`asyncio.run(main)` on a muxio.aio loop: runs the coroutine, then cancels what is
    left, finalizes async generators, shuts the default executor down and closes."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=partial(new_event_loop, backend)) as r:
            return r.run(main)
    else:  # pragma: no cover - Python 3.10
        return _run_without_runner(main, backend, debug)


def _run_without_runner(main: Coroutine[Any, Any, T], backend: str | None,
                        debug: bool | None) -> T:  # pragma: no cover - Python 3.10
    """asyncio.run's sequence for Pythons without asyncio.Runner."""
    loop = new_event_loop(backend)
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
