"""`muxio serve dns`: the authoritative DNS server on UDP and TCP, on the same port.

    muxio serve dns --zone example.com.zone --zone example.org.zone --port 5300

SIGHUP reloads every zone file. The files are read and indexed in a worker thread, so
the loop keeps answering from the zones it has meanwhile (a large zone takes seconds to
read), then the new zones are swapped in on the loop in one assignment. If a file fails
to load (missing, not a regular file, a syntax error, too many records...), the error is
logged and the zones already served stay in place; no query is dropped either way.
SIGHUPs that arrive during a reload are folded into one more reload after it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable

from muxio.cli.services.connlog import log_queries
from muxio.cli.services.tcp_service import format_address
from muxio.errors import ConfigError, LoopError
from muxio.handlers import dns as handler
from muxio.handlers.dns import DnsServer, ZoneError, ZoneSet
from muxio.handlers.dns.answer import Responder
from muxio.handlers.dns.hosting import DnsServiceConfig
from muxio.handlers.dns.hosting import load as load_zone_files
from muxio.handlers.dns.zones import DEFAULT_MAX_RECORDS
from muxio.loop import Loop
from muxio.transports import tcp, udp

log = logging.getLogger("muxio.serve.dns")

DESCRIPTION = handler.DESCRIPTION
DEFAULT_PORT = handler.SERVICE_PORT
_PORT_ATTEMPTS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    handler.add_arguments(parser)


def config_from(args: argparse.Namespace) -> DnsServiceConfig:
    try:
        return handler.config_from(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load(paths: list[str], max_records: int = DEFAULT_MAX_RECORDS) -> ZoneSet:
    """Load the zone files, as a ConfigError naming the file on failure."""
    try:
        return load_zone_files(DnsServiceConfig(zone_files=tuple(paths),
                                                max_zone_records=max_records))
    except ZoneError as exc:
        raise ConfigError(str(exc)) from exc


def dns_server(loop: Loop, args: argparse.Namespace) -> DnsServer:
    """The server every UDP endpoint and TCP connection shares, from the flags."""
    try:
        return handler.dns_server(loop, config_from(args))
    except ZoneError as exc:
        raise ConfigError(str(exc)) from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


ZoneLoader = Callable[[list[str]], ZoneSet]
"""Reads the zone files (raising ConfigError): `load` with the service's limits."""


class DnsService:
    """A DNS server listening on UDP and TCP, with SIGHUP reloading its zones off the loop."""

    def __init__(self, loop: Loop, server: DnsServer, zone_paths: list[str],
                 udp_server: udp.UdpServer, tcp_server: tcp.AnyTcpServer, *,
                 loader: ZoneLoader = load) -> None:
        self.loop = loop
        self.server = server
        self.zone_paths = zone_paths
        self.udp_server = udp_server
        self.tcp_server = tcp_server
        self.loader = loader
        self.reloads_failed = 0
        self._reloading: threading.Thread | None = None
        self._reload_again = False
        self._closed = False
        self._sighup = False
        if threading.current_thread() is threading.main_thread():
            try:
                loop.add_signal_handler(signal.SIGHUP, self.reload)
                self._sighup = True
            except LoopError as exc:
                log.warning("no SIGHUP reload: %s", exc)

    @property
    def reloading(self) -> bool:
        """Whether a reload is reading the zone files now."""
        return self._reloading is not None

    def reload(self) -> None:
        """Start reading the zone files in a worker thread; the new zones are served once
        read and indexed, or an error is logged and the current zones stay (on the loop)."""
        if self._closed:
            return
        if self._reloading is not None:
            self._reload_again = True  # fold SIGHUPs that arrive meanwhile into one more
            return
        log.info("reloading zones from %s", ", ".join(self.zone_paths))
        # A daemon thread: a zone file that blocks its reader (say an $INCLUDE swapped
        # for a FIFO between the check and the open) must not keep the process alive.
        self._reloading = threading.Thread(target=self._load_in_thread, daemon=True,
                                           name="muxio-dns-reload")
        self._reloading.start()

    def _load_in_thread(self) -> None:
        result: Responder | ConfigError
        try:
            result = self.server.responder_for(self.loader(self.zone_paths))
        except ConfigError as exc:
            result = exc
        except Exception as exc:  # a bug in loading: reported like a load error, not lost
            log.exception("zone reload crashed")
            result = ConfigError(f"zone reload crashed: {exc!r}")
        try:
            self.loop.call_soon_threadsafe(self._loaded, result)
        except LoopError:
            pass  # the loop closed meanwhile: nothing to serve the zones on

    def _loaded(self, result: Responder | ConfigError) -> None:
        """On the loop: install what the worker read (or log why it could not)."""
        self._reloading = None
        if self._closed:
            return
        if isinstance(result, ConfigError):
            self.reloads_failed += 1
            log.error("zone reload failed, still serving the previous zones: %s", result)
        else:
            self.server.install(result)
        if self._reload_again:
            self._reload_again = False
            self.reload()

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
        # The io_uring listener (--backend uring) has no accept_queued: its accepts are
        # already posted to the ring.
        accept_queued = getattr(self.tcp_server, "accept_queued", None)
        if accept_queued is not None:
            accept_queued()
        self.tcp_server.close()
        self.tcp_server.close_clients()

    def open_connections(self) -> int:
        return len(self.tcp_server.connections)

    def close(self) -> None:
        self._closed = True
        if self._sighup:
            self.loop.remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        self.udp_server.close()
        self.tcp_server.close()
        self.tcp_server.close_clients()


def _listen(loop: Loop, server: DnsServer,
            args: argparse.Namespace) -> tuple[udp.UdpServer, tcp.AnyTcpServer]:
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
    max_records = args.max_zone_records
    return DnsService(loop, server, list(args.zones), udp_server, tcp_server,
                      loader=lambda paths: load(paths, max_records))
