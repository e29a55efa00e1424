"""One io_uring instance, spoken to through the kernel ABI: setup, the shared rings, SQEs.

Theory of operation
-------------------
io_uring is two rings in memory shared with the kernel. We write requests (SQEs, 64 bytes
each) into the submission ring and move its tail; the kernel writes results (CQEs,
16 bytes: user_data, res, flags) into the completion ring and moves its tail; we read
them and move its head. One `io_uring_enter` both submits every SQE written since the
last call and waits for completions, with a timeout: that is the whole point, the kernel
work of a loop iteration is handed over in a single system call.

Why ctypes and not a binding package: the wait must release the GIL (muxio's LoopThread
runs a loop in one thread while the test or the application talks to it from another;
a wait that holds the GIL freezes them all until it times out). ctypes releases the GIL
around every foreign call. The `liburing` package's wrappers hold it while they wait
(2024.x, Cython, and 2026.x, Zig), and its 2026 wheels are compiled for AVX-512 and
die with SIGILL on CPUs without it. The kernel ABI used here has been stable since
Linux 5.1; the features we need are checked when the ring is set up (see `REQUIRED`).

Facts about io_uring that shape this file:
- The rings are mapped with mmap(2) from the ring fd (with IORING_FEAT_SINGLE_MMAP, SQ
  and CQ share one mapping). We map through libc (ctypes) rather than the `mmap` module,
  which would dup() the ring fd for each mapping.
- SQ slots are used in order, so the SQ index array is filled with the identity once and
  never written again.
- IORING_SETUP_COOP_TASKRUN + TASKRUN_FLAG: completions are posted on our own way out
  of a system call (any: the recv a transport just made counts), never by interrupting
  us, and the kernel raises IORING_SQ_TASKRUN while some are pending. So a poll with
  nothing to submit needs no system call when CQEs are already in the ring, nor when it
  must not wait and no work is pending. And every CQE we read was written by our own
  thread's system call, which orders memory for us on every architecture.
- IORING_SETUP_SUBMIT_ALL: a bad SQE (its error comes back as a CQE) does not stop the
  kernel from taking the SQEs after it.
- CQ overflow: with IORING_FEAT_NODROP the kernel keeps CQEs that did not fit and flags
  IORING_SQ_CQ_OVERFLOW; entering with GETEVENTS moves them into the ring. The CQ is
  sized far above the SQ so that this is rare.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
import weakref
from collections.abc import Callable

# -- the kernel ABI (include/uapi/linux/io_uring.h) ----------------------------------------

SYS_IO_URING_SETUP = 425
SYS_IO_URING_ENTER = 426
SYS_IO_URING_REGISTER = 427
"""The same numbers on every architecture (the unified syscall table, Linux >= 5.1)."""

IORING_OP_POLL_ADD = 6
IORING_OP_POLL_REMOVE = 7
IORING_OP_ACCEPT = 13
IORING_OP_ASYNC_CANCEL = 14
IORING_OP_SEND = 26
IORING_OP_RECV = 27

IOSQE_BUFFER_SELECT = 0x20
IOSQE_CQE_SKIP_SUCCESS = 0x40

IORING_RECV_MULTISHOT = 0x2
IORING_ACCEPT_MULTISHOT = 0x1

IORING_POLL_ADD_MULTI = 0x1
IORING_POLL_UPDATE_EVENTS = 0x2

IORING_CQE_F_BUFFER = 0x1
IORING_CQE_F_MORE = 0x2
IORING_CQE_BUFFER_SHIFT = 16

IORING_SETUP_CQSIZE = 0x8
IORING_SETUP_CLAMP = 0x10
IORING_SETUP_SUBMIT_ALL = 0x80
IORING_SETUP_COOP_TASKRUN = 0x100
IORING_SETUP_TASKRUN_FLAG = 0x200
IORING_SETUP_SINGLE_ISSUER = 0x1000
IORING_SETUP_DEFER_TASKRUN = 0x2000
"""Completion work runs only inside io_uring_enter(GETEVENTS) of the one thread that
submits (Linux 6.1). Not used by the poller (a loop may be created in one thread and run
in another); the benchmarks try it."""

IORING_FEAT_SINGLE_MMAP = 0x1
IORING_FEAT_NODROP = 0x2
IORING_FEAT_FAST_POLL = 0x20
IORING_FEAT_EXT_ARG = 0x100
IORING_FEAT_CQE_SKIP = 0x800

IORING_ENTER_GETEVENTS = 0x1
IORING_ENTER_EXT_ARG = 0x8

IORING_SQ_CQ_OVERFLOW = 0x2
IORING_SQ_TASKRUN = 0x4
_WORK_PENDING = IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW

IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000

REQUIRED: dict[int, str] = {
    IORING_FEAT_SINGLE_MMAP: "IORING_FEAT_SINGLE_MMAP (Linux 5.4)",
    IORING_FEAT_NODROP: "IORING_FEAT_NODROP (Linux 5.5)",
    IORING_FEAT_FAST_POLL: "IORING_FEAT_FAST_POLL (Linux 5.7)",
    IORING_FEAT_EXT_ARG: "IORING_FEAT_EXT_ARG (Linux 5.11)",
    IORING_FEAT_CQE_SKIP: "IORING_FEAT_CQE_SKIP (Linux 5.17)",
}
"""Kernel features the backend relies on; a kernel without one of them is refused with
its name. Multishot poll (5.13) and POLL_UPDATE (5.13) come before CQE_SKIP."""

SETUP_FLAGS = (IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL
               | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG)

_PROT_READ = 0x1
_PROT_WRITE = 0x2
_MAP_SHARED = 0x01
_MAP_POPULATE = 0x8000
_MAP_FAILED = ctypes.c_void_p(-1).value

_SQE = struct.Struct("<BBHiQQIIQHHiQQ")
"""opcode, flags, ioprio, fd, off/addr2, addr, len, op_flags (poll32_events), user_data,
buf_index/buf_group, personality, splice_fd_in/file_index, addr3, pad: 64 bytes."""
_CQE = struct.Struct("<QiI")
"""user_data, res, flags: 16 bytes."""
_CQE_SIZE = _CQE.size
_BIG_ENDIAN = sys.byteorder == "big"
_ROOM_ATTEMPTS = 4


class _SqOffsets(ctypes.Structure):
    _fields_ = [("head", ctypes.c_uint32), ("tail", ctypes.c_uint32),
                ("ring_mask", ctypes.c_uint32), ("ring_entries", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("dropped", ctypes.c_uint32),
                ("array", ctypes.c_uint32), ("resv1", ctypes.c_uint32),
                ("user_addr", ctypes.c_uint64)]


class _CqOffsets(ctypes.Structure):
    _fields_ = [("head", ctypes.c_uint32), ("tail", ctypes.c_uint32),
                ("ring_mask", ctypes.c_uint32), ("ring_entries", ctypes.c_uint32),
                ("overflow", ctypes.c_uint32), ("cqes", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("resv1", ctypes.c_uint32),
                ("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):
    _fields_ = [("sq_entries", ctypes.c_uint32), ("cq_entries", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("sq_thread_cpu", ctypes.c_uint32),
                ("sq_thread_idle", ctypes.c_uint32), ("features", ctypes.c_uint32),
                ("wq_fd", ctypes.c_uint32), ("resv", ctypes.c_uint32 * 3),
                ("sq_off", _SqOffsets), ("cq_off", _CqOffsets)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class _GeteventsArg(ctypes.Structure):
    _fields_ = [("sigmask", ctypes.c_uint64), ("sigmask_sz", ctypes.c_uint32),
                ("min_wait_usec", ctypes.c_uint32), ("ts", ctypes.c_uint64)]


# -- libc through ctypes (foreign calls release the GIL) -----------------------------------

class _Libc:
    """The three libc entry points we need, typed once."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.syscall: Callable[..., int] = libc.syscall
        libc.syscall.restype = ctypes.c_long
        # glibc's syscall() only moves registers: declaring fixed long arguments is exact.
        libc.syscall.argtypes = [ctypes.c_long] * 7
        self.mmap: Callable[..., int | None] = libc.mmap
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        # The same function again without argtypes, for the hot path: Python ints go as C
        # ints (libffi widens them to the register, and the kernel reads them as u32),
        # pointers and sizes as prepared ctypes objects. About 1 us cheaper per call.
        enter = ctypes.CDLL(None, use_errno=True).syscall
        enter.restype = ctypes.c_long
        self.enter_syscall: Callable[..., int] = enter
        self.munmap: Callable[..., int] = libc.munmap
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


_libc: _Libc | None = None


def libc() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


def _os_error(code: int, what: str) -> OSError:
    return OSError(code, f"{what}: {os.strerror(code)}")


def io_uring_setup(entries: int, params: _Params) -> int:
    """The io_uring_setup(2) system call; returns the ring fd or raises OSError.

    Module-level so that a test can replace it to simulate a kernel that refuses."""
    fd = libc().syscall(SYS_IO_URING_SETUP, entries, ctypes.addressof(params), 0, 0, 0, 0)
    if fd < 0:
        code = ctypes.get_errno()
        raise _os_error(code, "io_uring_setup")
    return int(fd)


def missing_features(features: int) -> list[str]:
    return [name for bit, name in REQUIRED.items() if not features & bit]


class RingFeatureError(OSError):
    """The kernel sets up a ring but lacks a feature the backend relies on."""


class _Mapping:
    """One mmap(2) of the ring fd, unmapped by `close`."""

    __slots__ = ("address", "size")

    def __init__(self, fd: int, size: int, offset: int) -> None:
        address = libc().mmap(None, size, _PROT_READ | _PROT_WRITE,
                              _MAP_SHARED | _MAP_POPULATE, fd, offset)
        if address is None or address == _MAP_FAILED:
            raise _os_error(ctypes.get_errno(), "mmap of the io_uring ring")
        self.address: int = address
        self.size = size

    def view(self, offset: int, length: int) -> memoryview:
        return memoryview((ctypes.c_ubyte * length).from_address(self.address + offset)
                          ).cast("B")

    def u32(self, offset: int) -> ctypes.c_uint32:
        return ctypes.c_uint32.from_address(self.address + offset)

    def close(self) -> None:
        if self.size:
            libc().munmap(self.address, self.size)
            self.size = 0


class Ring:
    """An io_uring: write SQEs with the `prep_*` methods, then `enter` submits and waits.

    Not thread-safe (nothing in a loop is): one thread prepares, enters and reaps.
    """

    def __init__(self, sq_entries: int = 1024, cq_entries: int = 16384,
                 extra_flags: int = 0) -> None:
        params = _Params()
        params.flags = SETUP_FLAGS | extra_flags
        params.cq_entries = cq_entries
        self.fd = io_uring_setup(sq_entries, params)
        self._maps: list[_Mapping] = []
        # A ring dropped without close() (an exception in a caller) still gives back its
        # fd and mappings when collected, as a select.epoll object does.
        self._finalizer = weakref.finalize(self, _release, self.fd, self._maps)
        try:
            self._setup(params)
        except BaseException:
            self.close()
            raise

    def _setup(self, params: _Params) -> None:
        self.features = params.features
        missing = missing_features(params.features)
        if missing:
            raise RingFeatureError(errno.ENOSYS,
                                   f"this kernel's io_uring lacks {', '.join(missing)}")
        sq_off, cq_off = params.sq_off, params.cq_off
        self.sq_entries = params.sq_entries
        self.cq_entries = params.cq_entries
        sq_size = sq_off.array + params.sq_entries * 4
        cq_size = cq_off.cqes + params.cq_entries * _CQE_SIZE
        rings = _Mapping(self.fd, max(sq_size, cq_size), IORING_OFF_SQ_RING)
        self._maps.append(rings)
        sqes = _Mapping(self.fd, params.sq_entries * _SQE.size, IORING_OFF_SQES)
        self._maps.append(sqes)

        self._sq_head = rings.u32(sq_off.head)
        self._sq_tail = rings.u32(sq_off.tail)
        self._sq_flags = rings.u32(sq_off.flags)
        self._sq_mask = rings.u32(sq_off.ring_mask).value
        self._cq_head = rings.u32(cq_off.head)
        self._cq_tail = rings.u32(cq_off.tail)
        self._cq_mask = rings.u32(cq_off.ring_mask).value
        array = rings.view(sq_off.array, params.sq_entries * 4).cast("I")
        for index in range(params.sq_entries):
            array[index] = index  # SQ slots are used in order: the identity, once
        array.release()
        self._sqes = sqes.view(0, params.sq_entries * _SQE.size)
        self._cqes = rings.view(cq_off.cqes, params.cq_entries * _CQE_SIZE)
        self._tail = self._sq_tail.value
        """Our SQ tail: SQEs up to here are written; the kernel's tail is set at enter."""

        self._ktail = self._tail
        """The tail the kernel was last given."""
        self._cq_head_value = self._cq_head.value
        # The arguments of io_uring_enter, built once: ctypes converts a prepared object
        # faster than a Python int, and the pointers must be passed as 64-bit values.
        self._timespec = _Timespec()
        self._last_timeout: float | None = None
        self._timed_arg = _GeteventsArg(ts=ctypes.addressof(self._timespec))
        self._forever_arg = _GeteventsArg(ts=0)
        self._wait_timed = ctypes.c_void_p(ctypes.addressof(self._timed_arg))
        self._wait_forever = ctypes.c_void_p(ctypes.addressof(self._forever_arg))
        self._arg_size = ctypes.c_size_t(ctypes.sizeof(_GeteventsArg))
        self._null = ctypes.c_void_p(0)
        self._zero = ctypes.c_size_t(0)
        self._syscall = libc().enter_syscall
        self._backlog: list[tuple[int, int, int]] = []
        self.enters = 0
        self.submitted = 0

    # -- submission ----------------------------------------------------------------------

    def _slot(self) -> int:
        """Byte offset of the next free SQE; submits what is queued if the SQ is full."""
        if self._tail - self._sq_head.value >= self.sq_entries:
            self._make_room()
        offset = (self._tail & self._sq_mask) * 64
        self._tail += 1
        return offset

    def prep_poll_add(self, fd: int, poll_mask: int, user_data: int) -> None:
        """A multishot POLL_ADD: one CQE (flag MORE) per readiness event until removed."""
        _SQE.pack_into(self._sqes, self._slot(), IORING_OP_POLL_ADD, 0, 0, fd, 0, 0,
                       IORING_POLL_ADD_MULTI, _poll32(poll_mask), user_data, 0, 0, 0, 0, 0)

    def prep_poll_update(self, user_data: int, poll_mask: int, control_data: int) -> None:
        """Change the mask of the armed multishot poll `user_data` (re-arms it, so current
        readiness is reported again). Only a failure posts a CQE (as `control_data`)."""
        _SQE.pack_into(self._sqes, self._slot(), IORING_OP_POLL_REMOVE,
                       IOSQE_CQE_SKIP_SUCCESS, 0, -1, 0, user_data,
                       IORING_POLL_UPDATE_EVENTS | IORING_POLL_ADD_MULTI, _poll32(poll_mask),
                       control_data, 0, 0, 0, 0, 0)

    def prep_poll_remove(self, user_data: int, control_data: int) -> None:
        """Cancel the poll `user_data`; it ends with an -ECANCELED CQE of its own."""
        _SQE.pack_into(self._sqes, self._slot(), IORING_OP_POLL_REMOVE,
                       IOSQE_CQE_SKIP_SUCCESS, 0, -1, 0, user_data, 0, 0, control_data,
                       0, 0, 0, 0, 0)

    def prep_recv_multishot(self, fd: int, buffer_group: int, user_data: int) -> None:
        """A multishot RECV into buffers the kernel picks from `buffer_group`: one CQE per
        arrival (res bytes, the buffer id in flags >> 16) until EOF, an error, or no
        buffer left (-ENOBUFS, the CQE without MORE)."""
        _SQE.pack_into(self._sqes, self._slot(), IORING_OP_RECV, IOSQE_BUFFER_SELECT,
                       IORING_RECV_MULTISHOT, fd, 0, 0, 0, 0, user_data, buffer_group, 0, 0,
                       0, 0)

    def prep_send(self, fd: int, address: int, length: int, flags: int,
                  user_data: int) -> None:
        """A SEND of `length` bytes at `address` (the caller keeps them alive until the
        CQE); with MSG_WAITALL the kernel retries a stream socket until all is sent."""
        _SQE.pack_into(self._sqes, self._slot(), IORING_OP_SEND, 0, 0, fd, 0, address,
                       length, flags, user_data, 0, 0, 0, 0, 0)

    def prep_accept_multishot(self, fd: int, flags: int, user_data: int) -> None:
        """A multishot ACCEPT: one CQE per connection, res = the new fd (accept4 flags)."""
        _SQE.pack_into(self._sqes, self._slot(), IORING_OP_ACCEPT, 0,
                       IORING_ACCEPT_MULTISHOT, fd, 0, 0, 0, flags, user_data, 0, 0, 0, 0, 0)

    def prep_cancel(self, target: int, user_data: int) -> None:
        """Cancel the request whose user_data is `target` (it ends with -ECANCELED)."""
        _SQE.pack_into(self._sqes, self._slot(), IORING_OP_ASYNC_CANCEL,
                       IOSQE_CQE_SKIP_SUCCESS, 0, -1, 0, target, 0, 0, user_data,
                       0, 0, 0, 0, 0)

    @property
    def pending(self) -> bool:
        """Whether SQEs were written that the kernel has not been given yet."""
        return self._tail != self._ktail

    def _make_room(self) -> None:
        """Submit a full SQ. If the kernel takes nothing because the CQ is full (EBUSY),
        move the CQEs aside (`completions` returns them first) and try again."""
        for _ in range(_ROOM_ATTEMPTS):
            self.enter(0)
            if self._tail - self._sq_head.value < self.sq_entries:
                return
            self._backlog += self._read_cqes()
        raise _os_error(errno.EBUSY, "the io_uring submission queue stays full")

    # -- the one system call -------------------------------------------------------------

    def submit_and_wait(self, timeout: float | None) -> list[tuple[int, int, int]]:
        """The poll: hand the SQEs written since the last call to the kernel and return
        every CQE as (user_data, res, flags), waiting up to `timeout` seconds (None: no
        limit) when there is none. At most one system call, and none when there is
        nothing to submit and either CQEs are already in the ring (completion work runs
        on our way out of any system call, e.g. the last recv) or the caller does not
        wait and the kernel has no work pending for us."""
        if self._tail == self._ktail:
            if self._cq_tail.value != self._cq_head_value:
                return self.completions()
            if (timeout is not None and timeout <= 0
                    and not self._sq_flags.value & _WORK_PENDING):
                return self._take_backlog()
        elif self._cq_tail.value != self._cq_head_value:
            timeout = 0  # submit, but do not wait: there is something to report already
        self.enter(0 if timeout is not None and timeout <= 0 else 1, timeout)
        return self.completions()

    def enter(self, min_complete: int, timeout: float | None = 0) -> None:
        """Submit every SQE written so far and wait for `min_complete` CQEs, at most
        `timeout` seconds (None: no limit). Timeouts and signals return quietly."""
        tail = self._tail
        to_submit = tail - self._sq_head.value
        if tail != self._ktail:
            self._sq_tail.value = self._ktail = tail
        if min_complete:
            if timeout is None:
                arg = self._wait_forever
            else:
                if timeout != self._last_timeout:
                    seconds = max(timeout, 0.0)
                    whole = int(seconds)
                    self._timespec.tv_sec = whole
                    self._timespec.tv_nsec = int((seconds - whole) * 1e9)
                    self._last_timeout = timeout
                arg = self._wait_timed
            ret = self._syscall(SYS_IO_URING_ENTER, self.fd, to_submit, min_complete,
                                IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, arg,
                                self._arg_size)
        else:
            ret = self._syscall(SYS_IO_URING_ENTER, self.fd, to_submit, 0,
                                IORING_ENTER_GETEVENTS, self._null, self._zero)
        self.enters += 1
        if ret < 0:
            code = ctypes.get_errno()
            if code in (errno.ETIME, errno.EINTR):
                return
            if code in (errno.EBUSY, errno.EAGAIN):
                # The CQ (or the kernel's request memory) is full: the caller reaps and the
                # unsubmitted SQEs go with the next enter.
                return
            raise _os_error(code, "io_uring_enter")
        self.submitted += to_submit

    def overflowed(self) -> bool:
        return bool(self._sq_flags.value & IORING_SQ_CQ_OVERFLOW)

    # -- completions ---------------------------------------------------------------------

    def completions(self) -> list[tuple[int, int, int]]:
        """Every CQE in the ring as (user_data, res, flags); marks them seen."""
        if self._backlog:
            return self._take_backlog() + self._read_cqes()
        return self._read_cqes()

    def _take_backlog(self) -> list[tuple[int, int, int]]:
        done, self._backlog = self._backlog, []
        return done

    def _read_cqes(self) -> list[tuple[int, int, int]]:
        head = self._cq_head_value
        tail = self._cq_tail.value
        if head == tail:
            return []
        mask = self._cq_mask
        start = (head & mask) * _CQE_SIZE
        end = (tail & mask) * _CQE_SIZE
        cqes = self._cqes
        if start < end:
            done = list(_CQE.iter_unpack(cqes[start:end]))
        else:  # wrapped around the end of the ring
            done = list(_CQE.iter_unpack(cqes[start:]))
            if end:
                done += _CQE.iter_unpack(cqes[:end])
        self._cq_head.value = self._cq_head_value = tail
        return done

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap the rings and close the fd: the kernel cancels whatever is in flight."""
        for name in ("_sqes", "_cqes"):
            view = getattr(self, name, None)
            if view is not None:
                view.release()
                setattr(self, name, None)
        self._finalizer()
        self.fd = -1


def _release(fd: int, maps: list[_Mapping]) -> None:
    for mapping in maps:
        mapping.close()
    maps.clear()
    os.close(fd)


def _poll32(mask: int) -> int:
    """poll32_events as the kernel reads it: its halves swapped on big-endian machines."""
    if _BIG_ENDIAN:
        return ((mask << 16) | (mask >> 16)) & 0xFFFFFFFF
    return mask
