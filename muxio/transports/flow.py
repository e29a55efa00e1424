"""Write-side flow control shared by every stream transport (TCP, KCP, in-memory).

One place keeps the water marks: above `high` the protocol's `pause_writing` is called,
and once the buffer drains to `low` or below, `resume_writing`. Defaults follow asyncio
(64 KiB high, high // 4 low).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from muxio.protocols import BaseProtocol

DEFAULT_HIGH_WATER = 64 * 1024

log = logging.getLogger("muxio.transports")


_DEFAULT_WATER_MARKS = (DEFAULT_HIGH_WATER, DEFAULT_HIGH_WATER // 4)
"""One tuple of the default marks for every transport (a fresh `high // 4` would be one
more int object per connection)."""


def water_marks(high: int | None, low: int | None) -> tuple[int, int]:
    """Validated (high, low), filling defaults like asyncio does."""
    if high is None and low is None:
        return _DEFAULT_WATER_MARKS
    if high is None:
        high = DEFAULT_HIGH_WATER if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"write buffer limits need high ({high}) >= low ({low}) >= 0")
    return high, low


class FlowControl:
    """Mixin: the protocol, the water marks and the paused flag. Call `_maybe_pause` after
    buffering and `_maybe_resume` after draining; `get_write_buffer_size` is the subclass's."""

    __slots__ = ("_high_water", "_low_water", "_protocol", "_writing_paused")
    _protocol: BaseProtocol
    _high_water: int
    _low_water: int
    _writing_paused: bool

    if TYPE_CHECKING:
        def get_write_buffer_size(self) -> int: ...

        def _report_protocol_error(self, exc: Exception, what: str, *,
                                   aborting: bool = False) -> None: ...

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water, self._low_water = water_marks(high, low)
        self._maybe_pause()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def _maybe_pause(self) -> None:
        if not self._writing_paused and self.get_write_buffer_size() > self._high_water:
            self._writing_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._report_protocol_error(exc, "pause_writing")

    def _maybe_resume(self) -> None:
        if self._writing_paused and self.get_write_buffer_size() <= self._low_water:
            self._writing_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._report_protocol_error(exc, "resume_writing")

