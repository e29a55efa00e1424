"""`muxio serve dns`: the authoritative DNS server on UDP and TCP, on the same port.

    muxio serve dns --zone example.com.zone --zone example.org.zone --port 5300

SIGHUP reloads every zone file; if one fails to load, the error is logged and the zones
already served stay in place (no query is dropped either way).
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import threading

from muxio.cli.services.tcp_service import format_address
from muxio.errors import ConfigError, LoopError
from muxio.handlers.dns import DnsServer, ZoneError, ZoneSet, load_zones
from muxio.handlers.dns.answer import DEFAULT_MAX_UDP_PAYLOAD
from muxio.handlers.dns.server import DEFAULT_CACHE_SIZE, DEFAULT_TCP_IDLE_TIMEOUT
from muxio.loop import Loop
from muxio.protocols import ProtocolFactory, Scheduler
from muxio.transports import tcp, udp

log = logging.getLogger("muxio.serve.dns")

DESCRIPTION = "authoritative DNS server for zone files (UDP and TCP on one port)"
DEFAULT_PORT = 5300
_PORT_ATTEMPTS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zone", action="append", required=True, metavar="FILE",
                        dest="zones", help="a master-format zone file (repeat for several "
                                           "zones; SIGHUP reloads them all)")
    parser.add_argument("--max-udp-size", type=int, default=DEFAULT_MAX_UDP_PAYLOAD,
                        metavar="BYTES", help="largest UDP response, advertised in EDNS "
                                              f"(default: {DEFAULT_MAX_UDP_PAYLOAD})")
    parser.add_argument("--tcp-idle-timeout", type=float, default=DEFAULT_TCP_IDLE_TIMEOUT,
                        metavar="SECONDS", help="close TCP connections idle this long "
                                                f"(default: {DEFAULT_TCP_IDLE_TIMEOUT:g})")
    parser.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_SIZE,
                        metavar="ENTRIES", help="encoded responses kept per transport "
                                                f"(default: {DEFAULT_CACHE_SIZE}; 0 = none)")


def load(paths: list[str]) -> ZoneSet:
    """Load the zone files, as a ConfigError naming the file on failure."""
    try:
        return load_zones(paths)
    except ZoneError as exc:
        raise ConfigError(str(exc)) from exc


def dns_server(scheduler: Scheduler, args: argparse.Namespace) -> DnsServer:
    """The shared server state, for any host (muxio's loop, or an adapter's)."""
    try:
        return DnsServer(load(args.zones), scheduler, max_udp_payload=args.max_udp_size,
                         cache_size=args.cache_size, tcp_idle_timeout=args.tcp_idle_timeout)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def protocol_factory(scheduler: Scheduler, args: argparse.Namespace) -> ProtocolFactory:
    """DNS over TCP only, for hosts that run stream protocols (`python -m adapters`)."""
    return dns_server(scheduler, args).stream_protocol


class DnsService:
    """A DNS server listening on UDP and TCP, with SIGHUP reloading its zones."""

    def __init__(self, loop: Loop, server: DnsServer, zone_paths: list[str],
                 udp_server: udp.UdpServer, tcp_server: tcp.TcpServer) -> None:
        self.loop = loop
        self.server = server
        self.zone_paths = zone_paths
        self.udp_server = udp_server
        self.tcp_server = tcp_server
        self._sighup = False
        if threading.current_thread() is threading.main_thread():
            try:
                loop.add_signal_handler(signal.SIGHUP, self.reload)
                self._sighup = True
            except LoopError as exc:
                log.warning("no SIGHUP reload: %s", exc)

    def reload(self) -> bool:
        """Load the zone files again and serve them; on failure keep the current zones."""
        try:
            zones = load(self.zone_paths)
        except ConfigError as exc:
            log.error("zone reload failed, still serving the previous zones: %s", exc)
            return False
        self.server.reload(zones)
        return True

    def describe(self) -> str:
        addresses = [f"udp {format_address(address)}" for address in self.udp_server.addresses]
        addresses += [f"tcp {format_address(sock.getsockname())}"
                      for sock in self.tcp_server.sockets]
        zones = ", ".join(str(origin) for origin in self.server.zones)
        return f"{', '.join(addresses)} (zones {zones})"

    def drain(self) -> None:
        """Stop listening (UDP answers are immediate: nothing is in flight there); TCP
        clients are closed once their answers are sent."""
        self.udp_server.close()
        self.tcp_server.accept_queued()
        self.tcp_server.close()
        self.tcp_server.close_clients()

    def open_connections(self) -> int:
        return len(self.tcp_server.connections)

    def close(self) -> None:
        if self._sighup:
            self.loop.remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        self.udp_server.close()
        self.tcp_server.close()
        self.tcp_server.close_clients()


def _listen(loop: Loop, server: DnsServer,
            args: argparse.Namespace) -> tuple[udp.UdpServer, tcp.TcpServer]:
    """TCP and UDP on the same port. With port 0, TCP picks one and UDP follows; if that
    port is taken for UDP, try another."""
    attempts = _PORT_ATTEMPTS if args.port == 0 else 1
    for attempt in range(attempts):
        tcp_server = tcp.serve(server.stream_protocol, args.host, args.port, loop=loop,
                               backlog=args.backlog, reuse_port=args.reuse_port)
        try:
            udp_server = udp.serve(server.datagram_protocol, args.host, tcp_server.port,
                                   loop=loop, reuse_port=args.reuse_port)
        except OSError as exc:
            tcp_server.close()
            if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
            continue
        return udp_server, tcp_server
    raise AssertionError("unreachable: the last attempt raises")


def start(loop: Loop, args: argparse.Namespace) -> DnsService:
    server = dns_server(loop, args)
    try:
        udp_server, tcp_server = _listen(loop, server, args)
    except OSError as exc:
        where = f"{args.host or '*'}:{args.port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {where} is already in use (UDP or TCP): choose "
                              f"another --port") from exc
        if exc.errno == errno.EACCES:
            raise ConfigError(f"no permission to listen on {where}: ports below 1024 need "
                              f"root or CAP_NET_BIND_SERVICE; choose another --port") from exc
        raise
    if socket.AF_INET6 not in {sock.family for sock in tcp_server.sockets} \
            and args.host == "localhost":
        log.info("IPv6 loopback unavailable: serving 127.0.0.1 only")
    return DnsService(loop, server, list(args.zones), udp_server, tcp_server)
