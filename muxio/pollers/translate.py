"""Translation between muxio's event flags and one OS facility's flags, as data."""

from __future__ import annotations

from muxio.pollers.base import ERROR, HUP, RDHUP, READ, WRITE


class EventTranslator:
    """Maps muxio flags to OS flags and back; results are cached per distinct OS mask."""

    __slots__ = ("_error", "_from_os", "_hup", "_rdhup", "_read", "_to_os", "_write",
                 "identity")

    def __init__(self, *, read: int, write: int, error: int, hup: int, rdhup: int = 0,
                 extra_read: int = 0, extra_error: int = 0) -> None:
        """`rdhup`: the OS flag reported as muxio's RDHUP (0: the backend does not report
        it; an OS flag folded into READ or HUP goes in `extra_read` or `hup` instead)."""
        self._read = read | extra_read | rdhup  # a FIN is readable (recv returns b"")
        self._write = write
        self._error = error | extra_error
        self._hup = hup
        self._rdhup = rdhup
        self._to_os = {events: (read if events & READ else 0) | (write if events & WRITE else 0)
                       for events in range((READ | WRITE | ERROR | HUP) + 1)}
        self._from_os: dict[int, int] = {}
        self.identity = ((read, write, error, hup) == (READ, WRITE, ERROR, HUP)
                         and rdhup in (0, RDHUP))
        """The OS uses muxio's values (Linux poll/epoll): results need no translation,
        provided the caller asks for no OS flags beyond these (EPOLLET is never
        reported, so it does not count)."""

    def to_os(self, events: int) -> int:
        """OS interest mask for muxio `events` (ERROR and HUP are always reported)."""
        return self._to_os[events]

    def from_os(self, os_events: int) -> int:
        """muxio flags for an OS result mask."""
        cached = self._from_os.get(os_events)
        if cached is None:
            cached = ((READ if os_events & self._read else 0)
                      | (WRITE if os_events & self._write else 0)
                      | (ERROR if os_events & self._error else 0)
                      | (HUP if os_events & self._hup else 0)
                      | (RDHUP if os_events & self._rdhup else 0))
            self._from_os[os_events] = cached
        return cached

    def results(self, raw: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Translate a whole poll result; one dict lookup per event on the hot path."""
        cache = self._from_os
        try:
            return [(fd, cache[os_events]) for fd, os_events in raw]
        except KeyError:
            for _, os_events in raw:
                self.from_os(os_events)
            return [(fd, cache[os_events]) for fd, os_events in raw]
