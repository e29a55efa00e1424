"""The Poller interface: one contract over select, poll, epoll and any `selectors` selector.

Theory of operation
-------------------
A poller maps five calls onto one OS facility:

    register(fd, events)   start watching fd for `events`
    modify(fd, events)     change what is watched
    unregister(fd)         stop watching
    poll(timeout)          wait, then return [(fd, events), ...]
    close()                release the OS object

`events` are muxio's own flags (READ, WRITE, ERROR, HUP, and RDHUP in results). Their
values equal Linux's POLLIN/POLLOUT/POLLERR/POLLHUP/POLLRDHUP (and EPOLL*), so the poll
and epoll backends translate with no work on Linux; other backends translate through a
table.

Everything backends have in common lives here: bookkeeping of registered fds (so that
double registration, unknown fds and closed pollers raise the same errors everywhere),
validation of fds (closed fds, per-backend fd limits), statistics, and the context
manager. A backend only supplies `_os_register`, `_os_modify`, `_os_unregister`,
`_os_poll` and `_os_close`, plus its `capabilities` as data.

Readiness can be spurious (select(2) and poll(2) say so): callers must tolerate EAGAIN
after a ready report. EINTR is retried by Python itself (PEP 475); if a signal handler
raises, the exception propagates, as it should.
"""

from __future__ import annotations

import errno
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TypeVar

from muxio.errors import (
    BadFdError,
    FdAlreadyRegisteredError,
    FdLimitError,
    FdNotRegisteredError,
    PollerClosedError,
    UnsupportedFileError,
)

READ = 0x001
"""Data (or a connection, or EOF) can be read without blocking."""
WRITE = 0x004
"""Data can be written without blocking."""
ERROR = 0x008
"""An error is pending on the fd (reported even if not asked for)."""
HUP = 0x010
"""The peer hung up (reported even if not asked for)."""
RDHUP = 0x2000
"""The peer shut down its sending side: its FIN is queued behind the data (Linux's
EPOLLRDHUP/POLLRDHUP value). Reported only by backends that ask the OS for it (epoll-et),
always together with READ; never asked for by a caller. Edge-triggered readers use it to
know that a short read did not leave them waiting for an EOF that raises no new edge."""

ALL_EVENTS = READ | WRITE | ERROR | HUP
INTEREST_EVENTS = READ | WRITE
"""What a caller may ask for; ERROR and HUP are always reported where the OS can."""


def describe_events(events: int) -> str:
    """`READ|WRITE` style text for logs and error messages."""
    names = [name for name, flag in (("READ", READ), ("WRITE", WRITE), ("ERROR", ERROR),
                                     ("HUP", HUP), ("RDHUP", RDHUP)) if events & flag]
    return "|".join(names) or "0"


class HasFileno(Protocol):
    def fileno(self) -> int: ...


FileLike = int | HasFileno


def fd_of(fileobj: FileLike) -> int:
    """The fd number of an int or of any object with `fileno()`."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError) as exc:
            raise BadFdError(f"{fileobj!r} has no usable fileno(): {exc}") from None
    if fd < 0:
        raise BadFdError(f"invalid file descriptor {fd}: it is negative (a closed file?)")
    return fd


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared as data so callers ask instead of guessing."""

    edge_triggered: bool = False
    """Events are reported once per change of state, not while the state lasts."""
    constant_time: bool = False
    """Cost of one poll does not grow with the number of idle registered fds."""
    max_fd: int | None = None
    """Highest fd number + 1 the backend can watch (select: FD_SETSIZE); None = no limit."""
    reports_hup: bool = True
    """Peer hang-up is reported as HUP (select reports it as READ instead)."""
    checks_fd_itself: bool = False
    """The OS call rejects closed fds at register time, so no extra fstat is needed."""
    completion_tcp: bool = False
    """TCP connections on this backend run in the poller's completion mode (io_uring: the
    kernel receives, sends and accepts; see transports/uring_tcp.py), not readiness."""


@dataclass(frozen=True)
class PollerStatistics:
    """A snapshot of one poller's counters (see `Poller.statistics`)."""

    backend: str
    registered_fds: int
    polls: int
    events: int
    edge_triggered: bool


def timeout_to_ms(timeout: float | None) -> int:
    """Seconds to poll(2)'s milliseconds: None blocks (-1); round up so we never wake early."""
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    return math.ceil(timeout * 1000.0)


PollerT = TypeVar("PollerT", bound="Poller")


class Poller(ABC):
    """Base of every backend. Subclasses set `name`, `capabilities` and the `_os_*` hooks."""

    name: str = "abstract"
    capabilities: Capabilities = Capabilities()

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}
        self._closed = False
        self._polls = 0
        self._events = 0
        self.check_closed_fds = True
        """On backends whose OS call accepts a closed fd (poll, select: not
        `checks_fd_itself`), `register` and `modify` fstat the fd so that a closed one
        raises BadFdError at once. An owner that reads `closed_fds` after every poll (the
        Loop) turns this off and saves a syscall per register/modify: poll's POLLNVAL and
        select's EBADF report such an fd at the next poll anyway."""
        self.closed_fds: list[int] = []
        """Registered fds a poll found closed behind our back (poll: POLLNVAL, select:
        EBADF). They are unregistered already; the owner (the loop) reads and clears
        this list after each poll. epoll finds none: it drops closed files silently."""

    # -- the contract --------------------------------------------------------------------

    def register(self, fileobj: FileLike, events: int) -> None:
        """Watch `fileobj` for `events` (READ and/or WRITE; 0 = registered, silent)."""
        fd = self._check_open_and_fd(fileobj)
        if fd in self._fds:
            raise FdAlreadyRegisteredError(
                f"fd {fd} is already registered with {self.name} "
                f"({describe_events(self._fds[fd])}); call modify() to change its events")
        self._check_events(events)
        limit = self.capabilities.max_fd
        if limit is not None and fd >= limit:
            raise FdLimitError(
                f"the {self.name!r} backend cannot watch fd {fd}: its limit is fd < {limit} "
                f"(FD_SETSIZE); use the 'poll' or 'epoll' backend for many connections")
        if self.check_closed_fds and not self.capabilities.checks_fd_itself:
            _require_open_fd(fd)
        try:
            self._os_register(fd, events)
        except OSError as exc:
            raise self._translate_os_error(exc, fd, "register") from exc
        # Bookkeeping only after the syscall succeeded: a failed register leaves no trace.
        self._fds[fd] = events

    def modify(self, fileobj: FileLike, events: int) -> None:
        """Change the events watched on an fd registered before. Also the way to re-arm
        an fd whose number may now name a new file (the old one closed while registered):
        the backend then watches the file that is there now, even if `events` are the
        same as before."""
        fd = self._check_open_and_fd(fileobj)
        old = self._fds.get(fd)
        if old is None:
            raise FdNotRegisteredError(
                f"fd {fd} is not registered with {self.name}; call register() first")
        self._check_events(events)
        if self.check_closed_fds and not self.capabilities.checks_fd_itself:
            _require_open_fd(fd)
        try:
            self._os_modify(fd, events, old)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise self._translate_os_error(exc, fd, "modify") from exc
            # The OS no longer knows the fd (epoll dropped the closed file whose number
            # this is now): watch the new file.
            try:
                self._os_register(fd, events)
            except OSError as error:
                raise self._translate_os_error(error, fd, "modify") from error
        self._fds[fd] = events

    def unregister(self, fileobj: FileLike) -> None:
        """Stop watching an fd. An fd closed while registered unregisters without error."""
        fd = self._check_open_and_fd(fileobj)
        events = self._fds.pop(fd, None)
        if events is None:
            raise FdNotRegisteredError(
                f"fd {fd} is not registered with {self.name}; nothing to unregister")
        try:
            self._os_unregister(fd, events)
        except OSError as exc:
            # The fd was closed (or closed and reused) behind our back: the kernel already
            # dropped it, and our bookkeeping is now clean too.
            if exc.errno not in (errno.EBADF, errno.ENOENT):
                raise

    def discard(self, fileobj: FileLike) -> None:
        """Forget an fd, whatever its state (closed, reused, unknown); never raises."""
        try:
            fd = fd_of(fileobj)
        except BadFdError:
            return
        events = self._fds.pop(fd, None)
        if events is not None and not self._closed:
            try:
                self._os_unregister(fd, events)
            except (OSError, KeyError, ValueError):
                pass  # closed behind our back: the OS side is already gone

    def _found_closed(self, fd: int) -> None:
        """A backend's poll found a registered fd closed: unregister it, tell the owner."""
        self.discard(fd)
        self.closed_fds.append(fd)

    def _find_closed_fds(self) -> bool:
        """After EBADF from a poll over many fds: find which are closed; True if any."""
        found = False
        for fd in list(self._fds):
            try:
                os.fstat(fd)
            except OSError:
                self._found_closed(fd)
                found = True
        return found

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """Wait up to `timeout` seconds (None = forever, 0 = don't wait) for events."""
        if self._closed:
            raise PollerClosedError(f"the {self.name} poller is closed; create a new one")
        try:
            ready = self._os_poll(timeout)
        except InterruptedError:
            ready = []
        self._polls += 1
        self._events += len(ready)
        return ready

    def close(self) -> None:
        """Release the OS object. Idempotent."""
        if not self._closed:
            self._closed = True
            self._fds.clear()
            self._os_close()

    # -- introspection -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def registered(self) -> dict[int, int]:
        """A copy of {fd: events} for every registered fd."""
        return dict(self._fds)

    def __contains__(self, fileobj: object) -> bool:
        try:
            return fd_of(fileobj) in self._fds  # type: ignore[arg-type]
        except BadFdError:
            return False

    def __len__(self) -> int:
        return len(self._fds)

    def fileno(self) -> int:
        """The OS object's fd, or -1 for backends without one (select, poll)."""
        return -1

    def statistics(self) -> PollerStatistics:
        return PollerStatistics(
            backend=self.name, registered_fds=len(self._fds), polls=self._polls,
            events=self._events, edge_triggered=self.capabilities.edge_triggered)

    def __enter__(self: PollerT) -> PollerT:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._fds)} fds"
        return f"<{type(self).__name__} {self.name!r} {state}>"

    # -- helpers -------------------------------------------------------------------------

    def _check_open_and_fd(self, fileobj: FileLike) -> int:
        if self._closed:
            raise PollerClosedError(f"the {self.name} poller is closed; create a new one")
        return fd_of(fileobj)

    def _check_events(self, events: int) -> None:
        if events & ~ALL_EVENTS or events < 0:
            raise ValueError(f"invalid event mask {events:#x}: use muxio.pollers READ|WRITE")

    def _translate_os_error(self, exc: OSError, fd: int, what: str) -> Exception:
        if exc.errno == errno.EBADF:
            return BadFdError(f"cannot {what} fd {fd} with {self.name}: it is closed")
        if exc.errno == errno.EPERM:
            return UnsupportedFileError(
                f"{self.name} refuses fd {fd} (a regular file or directory?); such files are "
                f"always ready: read them directly, or use the 'poll' or 'select' backend")
        if exc.errno == errno.ENOENT:
            return FdNotRegisteredError(f"fd {fd} is not registered with the OS {self.name}")
        if exc.errno == errno.EEXIST:
            return FdAlreadyRegisteredError(f"fd {fd} is already registered with {self.name}")
        return exc

    # -- backend hooks -------------------------------------------------------------------

    @abstractmethod
    def _os_register(self, fd: int, events: int) -> None: ...

    @abstractmethod
    def _os_modify(self, fd: int, events: int, old_events: int) -> None: ...

    @abstractmethod
    def _os_unregister(self, fd: int, old_events: int) -> None: ...

    @abstractmethod
    def _os_poll(self, timeout: float | None) -> list[tuple[int, int]]: ...

    def _os_close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release OS resources; backends without an OS object have nothing to do."""


def _require_open_fd(fd: int) -> None:
    try:
        os.fstat(fd)
    except OSError:
        raise BadFdError(f"fd {fd} is closed or invalid; register an open file") from None
