"""Memory the kernel fills or reads for a ring: a provided-buffer ring, bytes addresses.

Theory of operation
-------------------
A multishot receive does not name a buffer: the kernel takes the next one from a ring of
buffer descriptors we registered (IORING_REGISTER_PBUF_RING, Linux 5.19) and says in the
CQE which one it filled (flags >> 16). We copy the bytes out and hand the buffer back at
once by writing its descriptor again and moving the ring's tail, so a buffer is never
held by Python code and the ring never runs dry while the loop keeps up. The descriptor
ring and the buffers are page-aligned anonymous mappings (libc mmap), unmapped on close;
the kernel pins what it uses, so unmapping after the ring is closed is safe.

A send names its buffer by address: `bytes_address` gives where CPython keeps a bytes
object's contents, valid for as long as the caller holds a reference to the object.
"""

from __future__ import annotations

import ctypes
import struct
import weakref

from muxio.pollers.uring_ring import (
    _MAP_FAILED,
    _MAP_POPULATE,
    _PROT_READ,
    _PROT_WRITE,
    SYS_IO_URING_REGISTER,
    Ring,
    _os_error,
    libc,
)

IORING_REGISTER_PBUF_RING = 22
_MAP_PRIVATE = 0x02
_MAP_ANONYMOUS = 0x20


class _BufRingEntry(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint64), ("len", ctypes.c_uint32),
                ("bid", ctypes.c_uint16), ("resv", ctypes.c_uint16)]


class _BufReg(ctypes.Structure):
    _fields_ = [("ring_addr", ctypes.c_uint64), ("ring_entries", ctypes.c_uint32),
                ("bgid", ctypes.c_uint16), ("flags", ctypes.c_uint16),
                ("resv", ctypes.c_uint64 * 3)]


class _Anonymous:
    """Page-aligned private memory (mmap MAP_ANONYMOUS), unmapped by `close`."""

    def __init__(self, size: int) -> None:
        address = libc().mmap(None, size, _PROT_READ | _PROT_WRITE,
                              _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_POPULATE, -1, 0)
        if address is None or address == _MAP_FAILED:
            raise _os_error(ctypes.get_errno(), "mmap of io_uring buffers")
        self.address: int = address
        self.size = size

    def close(self) -> None:
        if self.size:
            libc().munmap(self.address, self.size)
            self.size = 0


class BufferRing:
    """A provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19): `count` buffers of
    `size` bytes that the kernel fills for multishot receives, handed back with `give`.

    The ring of buffer descriptors and the buffers are two anonymous mappings; the
    descriptor ring's tail is the 16-bit field at byte 14 (the `resv` of entry 0)."""

    def __init__(self, ring: Ring, group: int, count: int, size: int) -> None:
        if count & (count - 1) or not 0 < count <= 32768:
            raise ValueError(f"buffer count {count} must be a power of two <= 32768")
        self.group = group
        self.count = count
        self.size = size
        self._mask = count - 1
        self._entries = _Anonymous(count * ctypes.sizeof(_BufRingEntry))
        self._memory = _Anonymous(count * size)
        self._finalizer = weakref.finalize(self, _unmap, self._memory, self._entries)
        self.view: memoryview | None = memoryview(
            (ctypes.c_ubyte * (count * size)).from_address(self._memory.address)).cast("B")
        self._descriptors = memoryview((ctypes.c_ubyte * (count * 16)).from_address(
            self._entries.address)).cast("B")
        self._tail_field = ctypes.c_uint16.from_address(self._entries.address + 14)
        self._tail = 0
        reg = _BufReg(ring_addr=self._entries.address, ring_entries=count, bgid=group)
        ret = libc().syscall(SYS_IO_URING_REGISTER, ring.fd, IORING_REGISTER_PBUF_RING,
                             ctypes.addressof(reg), 1, 0, 0)
        if ret < 0:
            code = ctypes.get_errno()
            self.close()
            raise _os_error(code, "IORING_REGISTER_PBUF_RING")
        for bid in range(count):
            self._put(bid)
        self._publish()

    def _put(self, bid: int) -> None:
        _BUF.pack_into(self._descriptors, (self._tail & self._mask) * 16,
                       self._memory.address + bid * self.size, self.size, bid)
        self._tail += 1

    def _publish(self) -> None:
        self._tail_field.value = self._tail & 0xFFFF

    def take(self, bid: int, length: int) -> bytes:
        """The `length` bytes the kernel put in buffer `bid`, which goes back at once."""
        assert self.view is not None
        start = bid * self.size
        data = bytes(self.view[start:start + length])
        self._put(bid)
        self._publish()
        return data

    def close(self) -> None:
        if self.view is not None:
            self.view.release()
            self.view = None
            self._descriptors.release()
        self._finalizer()


def _unmap(*mappings: _Anonymous) -> None:
    for mapping in mappings:
        mapping.close()


_BUF = struct.Struct("<QIH")


def bytes_address(data: bytes) -> int:
    """Where CPython keeps the contents of a bytes object (valid while it is alive)."""
    return id(data) + _BYTES_DATA_OFFSET


def _bytes_data_offset() -> int:
    probe = b"muxio"
    address = ctypes.cast(ctypes.c_char_p(probe), ctypes.c_void_p).value
    assert address is not None
    return address - id(probe)


_BYTES_DATA_OFFSET = _bytes_data_offset()
