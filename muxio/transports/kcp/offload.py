"""UDP segmentation offload for KCP endpoints: many datagrams per system call (Linux).

Theory of operation
-------------------
A KCP flush emits a run of datagrams to one peer, nearly all of the same size (a full
segment each: `mtu` bytes). Sending each with its own `sendto` costs a kernel crossing per
datagram, as much as the Python core spends on it.

*GSO* (`UDP_SEGMENT`, Linux 4.18): one `sendmsg` carries a buffer and, as ancillary data, a
segment size; the kernel cuts it into datagrams of that size (the last may be shorter), up
to 64 of them and 64 KiB in all. The endpoint queues the datagrams of one loop iteration
(they are sent before the loop polls again, `Loop.call_before_poll`, in the same iteration
as before) and sends each run of equal-size datagrams to one address in one call.

*GRO* (`UDP_GRO`, Linux 5.0): the kernel may hand `recvmsg` several datagrams of one flow
glued together, with their size as ancillary data; they are cut apart again here. On a
loopback the datagrams a GSO sender glued arrive still glued: one system call each way for
a whole window.

Detection: each option is switched on (or probed) with `setsockopt` when the endpoint
opens; a socket or kernel that refuses it leaves the endpoint exactly as before (one
`sendto`/`recvfrom` per datagram). A `sendmsg` that fails because the route cannot
segment (EIO, EINVAL) turns GSO off for the endpoint and resends the run one by one.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from typing import Any

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
MAX_SEGMENTS = 64
"""The kernel's UDP_MAX_SEGMENTS."""
MAX_GSO_BYTES = 65000
"""Payload bytes per GSO send (IP's 64 KiB less headers)."""
GRO_CMSG_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
GSO_FAILURES = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
_gso_size = struct.Struct("=H")
_gro_int = struct.Struct("=i")


def enable_gso(sock: socket.socket) -> bool:
    """Probe UDP_SEGMENT (set to 0: off by default, per-call sizes via sendmsg)."""
    if not hasattr(sock, "sendmsg"):
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
    except OSError:
        return False
    return True


def enable_gro(sock: socket.socket) -> bool:
    """Switch UDP_GRO on; False (and nothing changed) if the kernel refuses."""
    if not GRO_CMSG_SPACE or not hasattr(sock, "recvmsg"):
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def gso_runs(datagrams: list[tuple[bytes, Any]]) -> Iterator[tuple[Any, list[bytes]]]:
    """Split queued (datagram, address) pairs, in order, into runs one GSO send can carry:
    one address, equal sizes (the last may be shorter), at most MAX_SEGMENTS and
    MAX_GSO_BYTES."""
    run: list[bytes] = []
    run_address: Any = None
    size = total = 0
    for datagram, address in datagrams:
        length = len(datagram)
        if run and (address != run_address or length > size or len(run) >= MAX_SEGMENTS
                    or total + length > MAX_GSO_BYTES or len(run[-1]) < size):
            yield run_address, run
            run = []
        if not run:
            run_address = address
            size = length
            total = 0
        run.append(datagram)
        total += length
    if run:
        yield run_address, run


def send_run(sock: socket.socket, run: list[bytes], address: Any) -> None:
    """One sendmsg for a run of two or more datagrams (raises OSError as sendmsg does)."""
    sock.sendmsg([b"".join(run)], [(SOL_UDP, UDP_SEGMENT, _gso_size.pack(len(run[0])))],
                 0, address)


def gro_segment_size(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The segment size the kernel reported for a glued receive (0: a plain datagram)."""
    for level, kind, data in ancillary:
        if level == SOL_UDP and kind == UDP_GRO:
            if len(data) >= 4:
                return int(_gro_int.unpack_from(data)[0])
            if len(data) >= 2:
                return int(_gso_size.unpack_from(data)[0])
    return 0
