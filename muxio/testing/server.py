"""Run a loop (and whatever you start on it) in a background thread, for tests.

    with LoopThread(backend="poll") as runner:
        server = runner.call(lambda loop: tcp.serve(EchoProtocol, loop=loop))
        ... talk to server.port from blocking code or subprocesses ...
        stats = runner.call(lambda loop: len(server.connections))

`call(fn)` runs `fn(loop)` inside the loop thread and returns its result (or raises its
exception), so tests never touch loop objects from the wrong thread. On exit, everything
registered with `on_close` runs in the loop thread, the loop is closed, the thread joined.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from muxio.loop import Clock, Loop

T = TypeVar("T")


class LoopThread:
    def __init__(self, backend: str | None = None, *, clock: Clock | None = None,
                 timeout: float = 30.0) -> None:
        self.loop = Loop(backend, clock=clock)
        self._timeout = timeout
        self._thread = threading.Thread(target=self._run, name=f"muxio-{self.loop.backend}",
                                        daemon=True)
        self._cleanups: list[Callable[[Loop], object]] = []
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            self.loop.run_forever()
        except BaseException as exc:  # surfaced by stop()
            self._failure = exc

    def start(self) -> LoopThread:
        self._thread.start()
        return self

    def call(self, fn: Callable[[Loop], T], timeout: float | None = None) -> T:
        """Run `fn(loop)` in the loop thread; wait for and return its result."""
        results: queue.Queue[tuple[bool, Any]] = queue.Queue(1)

        def run() -> None:
            try:
                results.put((True, fn(self.loop)))
            except BaseException as exc:
                results.put((False, exc))

        self.loop.call_soon_threadsafe(run)
        try:
            ok, value = results.get(timeout=timeout or self._timeout)
        except queue.Empty:
            raise TimeoutError(f"the loop thread did not run {fn!r} within "
                               f"{timeout or self._timeout} s") from None
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def on_close(self, fn: Callable[[Loop], object]) -> None:
        """Run `fn(loop)` in the loop thread when the runner stops (e.g. server.close)."""
        self._cleanups.append(fn)

    def drain(self, rounds: int = 3) -> None:
        """Let pending callbacks (e.g. connection_lost after close) run."""
        for _ in range(rounds):
            self.call(lambda loop: None)

    def stop(self) -> None:
        if self._thread.is_alive():
            for cleanup in reversed(self._cleanups):
                self.call(cleanup)
            self.drain()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(self._timeout)
            if self._thread.is_alive():
                raise TimeoutError("the loop thread did not stop")
        self.loop.close()
        if self._failure is not None:
            raise RuntimeError("the loop thread failed") from self._failure

    def __enter__(self) -> LoopThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
