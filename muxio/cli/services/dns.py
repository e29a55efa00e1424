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

from muxio.cli.services.connlog import log_queries
from muxio.cli.services.tcp_service import format_address
from muxio.errors import ConfigError, LoopError
from muxio.handlers import dns as handler
from muxio.handlers.dns import DnsServer, ZoneError, ZoneSet, load_zones
from muxio.loop import Loop
from muxio.transports import tcp, udp

log = logging.getLogger("muxio.serve.dns")

DESCRIPTION = handler.DESCRIPTION
DEFAULT_PORT = handler.SERVICE_PORT
_PORT_ATTEMPTS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    handler.add_arguments(parser)


def load(paths: list[str]) -> ZoneSet:
    """Load the zone files, as a ConfigError naming the file on failure."""
    try:
        return load_zones(paths)
    except ZoneError as exc:
        raise ConfigError(str(exc)) from exc


def dns_server(loop: Loop, args: argparse.Namespace) -> DnsServer:
    """The server every UDP endpoint and TCP connection shares, from the flags."""
    try:
        return handler.dns_server(loop, handler.config_from(args))
    except (ZoneError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


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
    stream_factory, datagram_factory = log_queries(
        server.stream_protocol, server.datagram_protocol, "dns", args, handler.describe_query)
    for attempt in range(attempts):
        tcp_server = tcp.serve(stream_factory, args.host, args.port, loop=loop,
                               backlog=args.backlog, reuse_port=args.reuse_port)
        try:
            udp_server = udp.serve(datagram_factory, args.host, tcp_server.port,
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
