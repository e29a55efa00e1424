"""UDP: a DatagramTransport over a non-blocking datagram socket, endpoints and servers.

Theory of operation
-------------------
Reads: on readiness, `recvfrom(65535)` (measured as fast as `recvfrom_into` a reused
buffer plus the copy a protocol needs anyway) and hand each datagram to
`protocol.datagram_received(data, addr)`. Each wakeup reads up to `_READS_PER_WAKEUP`
datagrams, stopping at EAGAIN: under load one poll serves a batch, which is what makes a
Python server keep up with a burst. On a level-triggered poller the fd is reported again if
the bound was reached; on an edge-triggered poller it would not be, so the rest is
continued with `call_soon` (other fds get their turn first).

Receive buffer: a burst of queries (e.g. 1000 outstanding DNS queries) arrives faster than
Python reads it; the kernel's default SO_RCVBUF (~208 KiB, about 300 small datagrams
counting per-packet overhead) overflows and drops. Endpoints ask for `DEFAULT_RCVBUF`
(4 MiB); the kernel clamps it to `net.core.rmem_max`, in which case SO_RCVBUFFORCE is tried
(it works with CAP_NET_ADMIN) and otherwise a warning says which sysctl to raise.

Errors: a failed `recvfrom`/`sendto` (ICMP port unreachable on a connected socket, EMSGSIZE,
EHOSTUNREACH...) goes to `protocol.error_received(exc)`; the endpoint stays open, as in
asyncio.

Writes: `sendto` sends at once. Only when the kernel refuses (EAGAIN or ENOBUFS: its send
buffer is full) is the datagram queued, whole, with its address, and write interest
registered; the queue drains in order when the socket is writable. The queued bytes drive
`pause_writing`/`resume_writing` through the shared water marks (flow.py).

Closing: `close()` stops reading and closes once the queue is sent; `abort()` drops it.
`connection_lost` runs exactly once, from the loop, after the reader is removed.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections import deque

from muxio.loop import Loop
from muxio.protocols import Address, DatagramProtocol, DatagramProtocolFactory
from muxio.transports.flow import water_marks
from muxio.transports.lifecycle import TransportLifecycle, release_socket
from muxio.transports.tcp import listen_addresses

log = logging.getLogger("muxio.udp")

MAX_DATAGRAM = 65535
"""Bytes per recvfrom: the largest UDP payload, so no datagram is ever cut."""
DEFAULT_RCVBUF = 4 * 1024 * 1024
"""SO_RCVBUF asked for by default: room for thousands of queued small datagrams."""
_READS_PER_WAKEUP = 64
_SEND_RETRY_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})
_rcvbuf_warned = False


class UdpTransport(TransportLifecycle):
    """The DatagramTransport a DatagramProtocol gets for one datagram socket."""

    __slots__ = ("_loop", "_sock", "_fd", "_buffer", "_buffer_size", "_edge", "_connected",
                 "_reading")

    _protocol: DatagramProtocol

    def __init__(self, loop: Loop, sock: socket.socket, protocol: DatagramProtocol) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        self._connected = peer is not None
        self._init_lifecycle(loop, protocol, {
            "socket": sock, "sockname": sock.getsockname(), "peername": peer,
            "transport": "udp", "backend": loop.backend})
        self._buffer: deque[tuple[bytes, Address]] = deque()
        self._buffer_size = 0
        self._high_water, self._low_water = water_marks(None, None)
        self._writing_paused = False
        self._reading = True
        self._edge = loop.edge_triggered
        loop.add_reader(self._fd, self._read_ready)
        try:
            protocol.connection_made(self)
        except Exception as exc:
            self._protocol_failed(exc, "connection_made")

    # -- reading -------------------------------------------------------------------------

    def _read_ready(self) -> None:
        recvfrom = self._sock.recvfrom
        protocol = self._protocol
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if self._lost:
                    return
                self._error_received(exc)
                continue
            try:
                protocol.datagram_received(data, addr)
            except Exception as exc:
                self._report_protocol_error(exc, "datagram_received")
            if self._closing or not self._reading:
                return
        if self._edge:
            # Edge-triggered: more datagrams may be queued, but no new report will come
            # until another one arrives. Continue after the other ready fds.
            self._loop.call_soon(self._continue_reading)

    def _continue_reading(self) -> None:
        if self._reading and not self._closing:
            self._read_ready()

    def pause_reading(self) -> None:
        """Stop delivering datagrams (they queue in the kernel, then drop when it is full)."""
        if self._reading and not self._closing:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)
            if self._edge:
                self._loop.call_soon(self._continue_reading)

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def _error_received(self, exc: OSError) -> None:
        try:
            self._protocol.error_received(exc)
        except Exception as error:
            self._report_protocol_error(error, "error_received")

    # -- writing -------------------------------------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, addr: Address = None) -> None:
        """Send one datagram to `addr` (the connected peer if None); queue it if the kernel
        buffer is full. Errors the kernel reports go to `protocol.error_received`."""
        if self._closing:
            log.debug("sendto() on a closing UDP transport ignored")
            return
        if addr is None and not self._connected:
            raise ValueError("sendto() needs an address: this UDP endpoint is not connected "
                             "(create it with remote_addr to send without one)")
        if not self._buffer:
            try:
                if addr is None:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if exc.errno not in _SEND_RETRY_ERRNOS:
                    self._error_received(exc)
                    return
            self._loop.add_writer(self._fd, self._write_ready)
        payload = bytes(data)
        self._buffer.append((payload, addr))
        self._buffer_size += len(payload)
        self._maybe_pause()

    def _write_ready(self) -> None:
        buffer = self._buffer
        sock = self._sock
        while buffer:
            data, addr = buffer[0]
            try:
                if addr is None:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return  # still full: wait for the next writability report
            except OSError as exc:
                if exc.errno in _SEND_RETRY_ERRNOS:
                    return
                buffer.popleft()
                self._buffer_size -= len(data)
                self._error_received(exc)
                continue
            buffer.popleft()
            self._buffer_size -= len(data)
        self._loop.remove_writer(self._fd)
        self._maybe_resume()
        if self._closing and not self._buffer:
            self._lose(None)

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; close once queued datagrams are sent."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._reading = False
        self._loop.remove_reader(self._fd)
        if not self._buffer:
            self._lose(None)

    def _abort(self, exc: Exception | None) -> None:
        """Close now, dropping queued datagrams."""
        if self._lost:
            return
        self._reading = False
        self._buffer.clear()
        self._buffer_size = 0
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._lose(exc)

    def _release(self) -> None:
        release_socket(self._loop, self._fd, self._sock)


def size_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for an SO_RCVBUF of `size` bytes; return what the kernel granted (its figure,
    which counts bookkeeping overhead: Linux reports twice the value set)."""
    global _rcvbuf_warned
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if granted < size and force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)  # needs CAP_NET_ADMIN
            granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except PermissionError:
            pass
    if granted < size and not _rcvbuf_warned:
        _rcvbuf_warned = True
        log.warning("UDP receive buffer is %d bytes, %d asked: bursts may be dropped. "
                    "Raise the cap with 'sysctl -w net.core.rmem_max=%d'.",
                    granted, size, size)
    return int(granted)


def _datagram_socket(family: int, rcvbuf: int | None, sndbuf: int | None,
                     reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if rcvbuf:
            size_receive_buffer(sock, rcvbuf)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def create_endpoint(protocol_factory: DatagramProtocolFactory,
                    local_addr: tuple[str, int] | None = None,
                    remote_addr: tuple[str, int] | None = None, *, loop: Loop,
                    family: int = 0, rcvbuf: int | None = DEFAULT_RCVBUF,
                    sndbuf: int | None = None,
                    reuse_port: bool = False) -> tuple[UdpTransport, DatagramProtocol]:
    """Open one UDP endpoint and return (transport, protocol) at once (UDP has no
    handshake). Addresses are IP literals: ('127.0.0.1', 0), ('::1', 5353).

    `local_addr` binds (default: an ephemeral port, chosen by the kernel at random, on
    the wildcard address of `family`); `remote_addr` connects, so `sendto(data)` needs no
    address and only that peer's datagrams are received. `family` defaults to the
    family of whichever address is given, else IPv4.
    """
    if not family:
        given = local_addr or remote_addr
        family = _family_of(given[0]) if given else socket.AF_INET
    sock = _datagram_socket(family, rcvbuf, sndbuf, reuse_port)
    try:
        if local_addr is not None:
            sock.bind(local_addr)
        if remote_addr is not None:
            sock.connect(remote_addr)
        protocol = protocol_factory()
        transport = UdpTransport(loop, sock, protocol)
    except BaseException:
        sock.close()
        raise
    return transport, protocol


def from_socket(protocol: DatagramProtocol, sock: socket.socket, *,
                loop: Loop) -> UdpTransport:
    """Wrap a datagram socket made elsewhere (any family, e.g. AF_UNIX socketpair); it is
    made non-blocking and owned (closed) by the transport."""
    if sock.type != socket.SOCK_DGRAM:
        raise ValueError(f"from_socket needs a SOCK_DGRAM socket, got {sock.type!r}")
    sock.setblocking(False)
    return UdpTransport(loop, sock, protocol)


class UdpServer:
    """Datagram endpoints bound to every address of a host (e.g. 127.0.0.1 and ::1), each
    with its own protocol from the factory."""

    def __init__(self, transports: list[UdpTransport]) -> None:
        self.transports = transports

    @property
    def sockets(self) -> list[socket.socket]:
        return [transport.get_extra_info("socket") for transport in self.transports]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [transport.get_extra_info("sockname")[:2] for transport in self.transports]

    @property
    def port(self) -> int:
        return int(self.addresses[0][1])

    def close(self) -> None:
        """Stop serving; datagrams still queued for sending are sent first."""
        for transport in self.transports:
            transport.close()

    def abort(self) -> None:
        for transport in self.transports:
            transport.abort()

    def is_serving(self) -> bool:
        return any(not transport.is_closing() for transport in self.transports)

    def __repr__(self) -> str:
        return f"<UdpServer {self.addresses}>"


def serve(protocol_factory: DatagramProtocolFactory, host: str | None = "127.0.0.1",
          port: int = 0, *, loop: Loop, rcvbuf: int | None = DEFAULT_RCVBUF,
          reuse_port: bool = False) -> UdpServer:
    """Bind UDP on every address `host` resolves to ('localhost' -> 127.0.0.1 and ::1;
    None -> all interfaces), all on the same port (with port 0, the first one's)."""
    sockets: list[socket.socket] = []
    try:
        for family, address in listen_addresses(host, port, socket.SOCK_DGRAM):
            sock = _datagram_socket(family, rcvbuf, None, reuse_port)
            sockets.append(sock)
            if port == 0 and len(sockets) > 1:
                sock.bind((address[0], sockets[0].getsockname()[1], *address[2:]))
            else:
                sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    transports: list[UdpTransport] = []
    try:
        for sock in sockets:
            transports.append(UdpTransport(loop, sock, protocol_factory()))
    except BaseException:
        for transport in transports:
            transport.abort()
        for sock in sockets[len(transports):]:
            sock.close()
        raise
    return UdpServer(transports)
