"""A fake clock for the loop: time moves only when told to, or jumps to the next timer."""

from __future__ import annotations


class FakeClock:
    """`Loop(clock=FakeClock())`: timers fire without real waiting.

    With `autojump=True` (default), whenever the loop would block waiting for a timer,
    the clock jumps straight to that timer's deadline and the loop polls without
    blocking. I/O still works: fds ready at that moment are reported as usual.
    `advance(seconds)` moves time by hand.

    `max_step` (seconds) bounds each jump, for tests with real sockets: loopback delivers
    in the next poll, so data already on its way is handled before a timer far ahead
    fires, and a `run_until` deadline keeps its meaning (without it, a loop whose only
    timer is that deadline jumps straight to it on the first idle poll). Timers still
    fire at their exact deadlines.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = True,
                 max_step: float | None = None) -> None:
        self._now = float(start)
        self.autojump = autojump
        self.max_step = max_step

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back; give seconds >= 0")
        self._now += seconds

    def before_wait(self, timeout: float | None) -> float | None:
        if self.autojump and timeout is not None and timeout > 0:
            self._now += timeout if self.max_step is None else min(timeout, self.max_step)
            return 0
        return timeout

    def __repr__(self) -> str:
        return f"<FakeClock t={self._now:.6f} autojump={self.autojump}>"
