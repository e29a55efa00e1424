"""io_uring as a readiness poller: one multishot POLL_ADD per fd, one system call per poll.

Theory of operation
-------------------
`register`, `modify` and `unregister` only write down what the caller wants (the base
class keeps `{fd: events}`) and mark the fd dirty. `poll` then reconciles, for each dirty
fd, what the kernel has armed with what is wanted, writing the fewest SQEs that do it:

    registered, nothing armed     POLL_ADD (multishot) with a fresh user_data
    modified, armed, same file    POLL_UPDATE of the mask (the kernel re-arms it)
    modified, armed, other file   POLL_REMOVE, then POLL_ADD (the number was reused)
    unregistered, armed           POLL_REMOVE of the armed poll
    unregistered and registered   POLL_REMOVE, then POLL_ADD (it may be another file)
    registered and unregistered   nothing: the kernel never hears of it

and hands every SQE to the kernel in the same `io_uring_enter` that waits for events
(see uring_ring.py). A loop iteration therefore costs at most one system call whatever
it changed, where epoll costs one epoll_ctl per change plus the epoll_wait; and none when
the CQEs are already there (completion work runs on our way out of any system call, such
as the last recv), which under load is most polls.

The same ring carries completion-mode TCP (muxio/transports/uring_tcp.py): requests
whose user_data has the `COMPLETION` bit are not polls; their CQEs are kept for
`take_completions`, and the ring's own fd, which that transport registers as a reader,
is reported READ while some wait.

user_data is `(generation << 32) | fd`; `_armed[fd]` holds the current one. A CQE whose
user_data is not current belongs to a poll we already removed or replaced, and is
dropped: the poll that replaced it checked readiness when it was armed, so nothing is
lost. Update and remove SQEs carry IOSQE_CQE_SKIP_SUCCESS and a user_data with the top
bit set: they post a CQE only when they fail (e.g. the poll had just ended), and then
the ended poll's own CQE has already asked for a re-arm.

Facts about io_uring poll that shape this file:
- A multishot poll posts one CQE (flag MORE) per wake-up of the file, not one per poll
  while the fd stays ready: it is edge-triggered, like EPOLLET, and declared so
  (`capabilities.edge_triggered`); muxio's transports then read until EAGAIN.
  Arming (POLL_ADD, POLL_UPDATE) checks readiness at once, so a modify reports current
  readiness, as EPOLL_CTL_MOD does, even when it sets the mask that was already armed.
- The kernel ends a multishot poll (a CQE without MORE) when it cannot post a CQE (CQ
  full) and for files without a wait queue (regular files, which are always ready).
  The fd is then re-armed with the next poll; regular files are thus reported ready on
  every poll, as poll(2) reports them.
- io_uring never re-checks readiness between the wake-up and our reading the CQE, so a
  report can be stale (the data was already read): the contract allows spurious
  readiness, and the transports tolerate EAGAIN.
- A POLL_ADD holds a reference to the *file*, not the number. A socket closed while
  registered stays open (no FIN) until it is unregistered or the poller is closed;
  epoll forgets such a socket by itself. muxio's transports always unregister before
  closing. If the number is then reused by a new file, `modify` (the loop's re-arm) must
  watch the new file: POLL_UPDATE would re-arm the old one, so register and modify note
  the file's identity (st_dev, st_ino, from the fstat that also refuses closed fds) and
  a modify that finds another file removes the old poll and adds a new one. Until then,
  wake-ups of the old file may be reported for the number: spurious readiness, which
  the contract allows. A poll armed on an fd that was closed before the SQE reached the
  kernel fails with EBADF and is forgotten silently, as epoll forgets a closed file.
- A ring is shared memory between one process and the kernel: like an epoll fd, a
  poller must not be used on both sides of a fork(); create loops in the workers.
- Bad input is refused where epoll refuses it: closed fds at register/modify (our
  fstat, since the SQE is only submitted with the next poll: `checks_fd_itself`), and
  by the base class double registration and unknown fds. The ring fd counts against
  RLIMIT_NOFILE like an epoll fd: under EMFILE the poller cannot be created, with the
  same OSError.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import select
import sys
from collections.abc import Callable
from dataclasses import replace

from muxio.pollers.base import ERROR, HUP, READ, Capabilities, Poller
from muxio.pollers.translate import EventTranslator
from muxio.pollers.uring_ring import IORING_CQE_F_MORE, Ring, RingFeatureError

log = logging.getLogger(__name__)

_POLLRDHUP = 0x2000
_POLLNVAL = 0x20
_TRANSLATOR = EventTranslator(read=select.POLLIN, write=select.POLLOUT, error=select.POLLERR,
                              hup=select.POLLHUP | _POLLRDHUP, extra_read=select.POLLPRI,
                              extra_error=_POLLNVAL)
_RDHUP_ALWAYS = _POLLRDHUP
"""Asked for with every mask, as epoll-et does: a FIN queued behind the data is reported
as HUP, so an edge-triggered reader knows a short read left nothing to wait for."""
_CONTROL = 1 << 63
COMPLETION = 1 << 62
"""user_data bit of requests made for a completion-mode transport (recv, send, accept):
their CQEs are kept for `take_completions`, and the ring fd is reported READ so that the
reader the transport registered for it (`loop.add_reader(poller.fileno(), ...)`) runs."""
_FD_MASK = 0xFFFFFFFF
_GENERATIONS = 1 << 30
_OVERFLOW_ROUNDS = 8
"""Times one poll brings overflowed CQEs into the ring before returning what it has."""
_ERROR_EVENTS = ERROR | HUP
_TRANSLATED: dict[int, int] = {}
"""OS poll mask -> muxio events, filled on first sight (a handful of distinct masks)."""


class UringPoller(Poller):
    """io_uring multishot poll (Linux >= 5.17): edge-triggered, one system call per poll."""

    name = "uring"
    capabilities = Capabilities(edge_triggered=True, constant_time=True, max_fd=None,
                                reports_hup=True, checks_fd_itself=True)

    def __init__(self, sq_entries: int = 1024, cq_entries: int = 16384) -> None:
        super().__init__()
        self._ring = Ring(sq_entries, cq_entries)
        self._armed: dict[int, int] = {}
        """fd -> user_data of the poll the kernel has armed for it."""
        self._dirty: set[int] = set()
        self._files: dict[int, tuple[int, int]] = {}
        """fd -> (st_dev, st_ino) of the file it named at register/modify."""
        self._replaced: set[int] = set()
        """fds unregistered since the last poll: their armed poll (if any) watches a file
        that may no longer be theirs, so it is removed even if re-registered alike."""
        self._generation = 0
        self._completed: list[tuple[int, int, int]] = []
        self._on_close: list[Callable[[], object]] = []

    # -- the base's hooks: write down, reconcile at poll time --------------------------

    def _os_register(self, fd: int, events: int) -> None:
        self._files[fd] = _file_identity(fd)  # OSError(EBADF) if closed: BadFdError
        self._dirty.add(fd)

    def _os_modify(self, fd: int, events: int, old_events: int) -> None:
        identity = _file_identity(fd)
        if identity != self._files.get(fd):
            self._replaced.add(fd)  # the number names another file now: re-add
            self._files[fd] = identity
        self._dirty.add(fd)

    def _os_unregister(self, fd: int, old_events: int) -> None:
        self._files.pop(fd, None)
        self._dirty.add(fd)
        self._replaced.add(fd)

    def _reconcile(self) -> None:
        ring = self._ring
        wanted = self._fds
        armed = self._armed
        replaced = self._replaced
        for fd in self._dirty:
            if fd == ring.fd:
                continue  # the completion reader: reported when completions wait, not polled
            events = wanted.get(fd)
            user_data = armed.get(fd)
            if user_data is not None and (events is None or fd in replaced):
                ring.prep_poll_remove(user_data, _CONTROL | user_data)
                del armed[fd]
                user_data = None
            if events is None:
                continue
            mask = _TRANSLATOR.to_os(events) | _RDHUP_ALWAYS
            if user_data is None:
                self._generation = (self._generation + 1) % _GENERATIONS
                user_data = (self._generation << 32) | fd
                ring.prep_poll_add(fd, mask, user_data)
                armed[fd] = user_data
            else:
                ring.prep_poll_update(user_data, mask, _CONTROL | user_data)
        self._dirty.clear()
        replaced.clear()

    def _os_poll(self, timeout: float | None) -> list[tuple[int, int]]:
        ring = self._ring
        if self._dirty:
            self._reconcile()
        completions = ring.submit_and_wait(timeout)
        if not completions:
            return []
        ready: dict[int, int] = {}
        self._reap(completions, ready)
        rounds = 0
        while ring.overflowed() and rounds < _OVERFLOW_ROUNDS:
            ring.enter(0)
            self._reap(ring.completions(), ready)
            rounds += 1
        if self._completed and ring.fd in self._fds:
            ready[ring.fd] = READ
        return list(ready.items())

    def _reap(self, completions: list[tuple[int, int, int]], ready: dict[int, int]) -> None:
        """Fold CQEs into `ready` ({fd: muxio events}); the hot path is one CQE per fd
        with MORE set."""
        armed = self._armed
        wanted = self._fds
        translated = _TRANSLATED
        for user_data, res, flags in completions:
            fd = user_data & _FD_MASK
            if armed.get(fd) != user_data:
                # Not a current poll: a removed or replaced one (its successor checked
                # readiness when armed), or a failed update/remove (top bit set).
                if user_data & COMPLETION:
                    self._completed.append((user_data, res, flags))
                elif user_data & _CONTROL and res < 0:
                    self._control_failed(fd, res)
                continue
            if res >= 0 and flags & IORING_CQE_F_MORE:
                events = translated.get(res)
                if events is None:
                    events = translated[res] = _TRANSLATOR.from_os(res)
                # A CQE posted before a modify may carry events no longer asked for.
                events &= wanted.get(fd, 0) | _ERROR_EVENTS
                if events:
                    ready[fd] = ready.get(fd, 0) | events
                continue
            self._poll_ended(fd, res, ready)

    def _poll_ended(self, fd: int, res: int, ready: dict[int, int]) -> None:
        """The kernel ended the current poll of `fd` (a CQE without MORE)."""
        del self._armed[fd]
        if res >= 0:
            # CQ full, or a file without a wait queue: report, and re-arm with the next
            # poll (re-arming checks readiness, so nothing is missed meanwhile).
            events = _TRANSLATOR.from_os(res) & (self._fds.get(fd, 0) | _ERROR_EVENTS)
            if events:
                ready[fd] = ready.get(fd, 0) | events
            self._dirty.add(fd)
        elif res == -errno.ECANCELED:
            self._dirty.add(fd)
        elif res == -errno.EBADF:
            # Closed before the SQE reached the kernel: forgotten without a word, as
            # epoll forgets a closed fd; the owner still has to unregister it.
            log.debug("fd %d was closed before its poll was armed", fd)
        else:
            # The kernel could not arm it (e.g. out of memory): the owner finds out from
            # ERROR; a modify re-arms it.
            log.warning("io_uring could not watch fd %d: %s", fd, errno.errorcode.get(-res, res))
            ready[fd] = ready.get(fd, 0) | ERROR

    @staticmethod
    def _control_failed(fd: int, res: int) -> None:
        # ENOENT/EALREADY: the poll had just ended; its own CQE asked for the re-arm.
        if -res not in (errno.ENOENT, errno.EALREADY):
            log.debug("io_uring poll update/remove of fd %d failed: %s", fd,
                      errno.errorcode.get(-res, res))

    # -- completion mode (see muxio/transports/uring_tcp.py) ------------------------------

    completion_io = True
    """This backend can also carry completion-mode transports (`COMPLETION` requests)."""

    def take_completions(self) -> list[tuple[int, int, int]]:
        """The CQEs of `COMPLETION` requests reaped since the last call."""
        done, self._completed = self._completed, []
        return done

    def call_on_close(self, callback: Callable[[], object]) -> None:
        """Run `callback()` when the poller closes (a completion-mode transport closes the
        sockets the kernel still held for it)."""
        self._on_close.append(callback)

    def _os_close(self) -> None:
        for callback in self._on_close:
            try:
                callback()
            except Exception:
                log.exception("uring close callback %r failed", callback)
        self._on_close.clear()
        self._completed.clear()
        self._files.clear()
        self._armed.clear()
        self._dirty.clear()
        self._replaced.clear()
        self._ring.close()

    def fileno(self) -> int:
        return self._ring.fd

    # -- introspection (tests check that nothing is left armed) ------------------------

    def armed(self) -> dict[int, int]:
        """{fd: user_data} of the polls this poller believes the kernel holds."""
        return dict(self._armed)

    def kernel_polls(self) -> int:
        """Polls the kernel holds for this ring, read from /proc/self/fdinfo (Linux)."""
        with open(f"/proc/self/fdinfo/{self._ring.fd}") as handle:
            text = handle.read()
        polls = text.split("PollList:", 1)[1].split("CqOverflowList:", 1)[0]
        return sum(1 for line in polls.splitlines() if line.strip().startswith("op="))

    @property
    def ring(self) -> Ring:
        return self._ring


def _file_identity(fd: int) -> tuple[int, int]:
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


def _kernel_refusal(exc: OSError) -> str | None:
    """The reason io_uring cannot be used here, or None for a passing shortage."""
    code = exc.errno
    if isinstance(exc, RingFeatureError):
        return f"{exc.strerror}; muxio's uring backend needs Linux >= 5.17"
    if code == errno.ENOSYS:
        return ("the kernel has no io_uring (io_uring_setup: ENOSYS): built without "
                "CONFIG_IO_URING, or a seccomp filter (container runtime) blocks it")
    if code == errno.EPERM:
        return (f"the kernel refuses io_uring (io_uring_setup: EPERM): "
                f"{_disabled_setting()}, or a seccomp filter blocks it")
    if code in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return None  # a shortage of fds or memory now, not a refusal: creating will say so
    return f"io_uring_setup failed: {exc}"


def _disabled_setting() -> str:
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as handle:
            value = handle.read().strip()
    except OSError:
        return "kernel.io_uring_disabled is not readable here"
    meaning = {"0": "enabled for all", "1": "only for the io_uring_group",
               "2": "disabled for all"}.get(value, "unknown value")
    return f"sysctl kernel.io_uring_disabled = {value} ({meaning})"


@functools.cache
def unavailable_reason() -> str | None:
    """Why the uring backend cannot run here (None: it can). Checked once per process by
    setting up a tiny ring, so every refusal shows with the kernel's own words."""
    if not sys.platform.startswith("linux"):
        return f"io_uring is Linux only (this is {sys.platform})"
    try:
        ring = Ring(sq_entries=2, cq_entries=4)
    except OSError as exc:
        return _kernel_refusal(exc)
    except (AttributeError, TypeError) as exc:  # a libc without syscall()/mmap()
        return f"cannot call io_uring through libc here: {exc}"
    ring.close()
    return None


class UringCompletionPoller(UringPoller):
    """The uring poller, with TCP in completion mode (transports/uring_tcp.py). Opt-in by
    name: measured, it costs more Python per request than it saves in the kernel."""

    name = "uring-completion"
    capabilities = replace(UringPoller.capabilities, completion_tcp=True)
