"""A fake clock for the loop: time moves only when told to, or jumps to the next timer."""

from __future__ import annotations


class FakeClock:
    """`Loop(clock=FakeClock())`: timers fire without real waiting.

    With `autojump=True` (default), whenever the loop would block waiting for a timer,
    the clock jumps straight to that timer's deadline and the loop polls without
    blocking. I/O still works: fds ready at that moment are reported as usual.
    `advance(seconds)` moves time by hand.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = float(start)
        self.autojump = autojump

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back; give seconds >= 0")
        self._now += seconds

    def before_wait(self, timeout: float | None) -> float | None:
        if self.autojump and timeout is not None and timeout > 0:
            self._now += timeout
            return 0
        return timeout

    def __repr__(self) -> str:
        return f"<FakeClock t={self._now:.6f} autojump={self.autojump}>"
