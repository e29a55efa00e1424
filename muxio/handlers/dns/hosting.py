"""What a host needs to run the authoritative DNS server (the shape described in
`muxio.handlers`): its command-line options, the config they make, the shared `DnsServer`
and, for stream-only hosts, the protocol factory of DNS over TCP.

A muxio host serves both transports from one `DnsServer` (so they share zones, caches and
reloads): `server = dns_server(loop, config)`, then `server.datagram_protocol` on UDP and
`server.stream_protocol` on TCP, on the same port (`muxio serve dns` does exactly this).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.rdataclass
import dns.rdatatype

from muxio.handlers.dns.answer import DEFAULT_MAX_UDP_PAYLOAD
from muxio.handlers.dns.server import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_MAX_TCP_CONNECTIONS,
    DEFAULT_TCP_IDLE_TIMEOUT,
    DEFAULT_TCP_MESSAGE_TIMEOUT,
    DnsServer,
)
from muxio.handlers.dns.zones import DEFAULT_MAX_RECORDS, ZoneSet, load_zones
from muxio.protocols import ProtocolFactory, Scheduler

DESCRIPTION = "authoritative DNS server for zone files (UDP and TCP on one port)"
SERVICE_PORT = 5300
"""Where `muxio serve dns` listens and `muxio resolve` asks by default: a port above 1024,
so neither needs root."""
ALPN: tuple[str, ...] = ("dot",)
"""ALPN of DNS over TLS (RFC 7858: the TCP framing, inside TLS)."""


@dataclass(frozen=True, kw_only=True)
class DnsServiceConfig:
    """The zone files to serve and the server's limits."""

    zone_files: tuple[str, ...]
    """Master-format zone files, loaded at start and on every reload."""
    max_udp_payload: int = DEFAULT_MAX_UDP_PAYLOAD
    """Largest UDP response, advertised in EDNS."""
    cache_size: int = DEFAULT_CACHE_SIZE
    """Encoded responses kept per transport (0 = none)."""
    tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT
    """Seconds a TCP connection may start no query after the last answer."""
    tcp_message_timeout: float = DEFAULT_TCP_MESSAGE_TIMEOUT
    """Seconds a TCP query may take from its first byte to its last."""
    max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS
    """Open TCP connections; a new one closes the least recently useful."""
    max_zone_records: int = DEFAULT_MAX_RECORDS
    """Records one zone may hold (a zone file is input too)."""

    def __post_init__(self) -> None:
        if self.max_zone_records < 1:
            raise ValueError(f"--max-zone-records must be >= 1, got {self.max_zone_records}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The zone files and the server's limits, as flags."""
    parser.add_argument("--zone", action="append", required=True, metavar="FILE",
                        dest="zones", help="a master-format zone file (repeat for several "
                                           "zones; SIGHUP reloads them all)")
    parser.add_argument("--max-udp-size", type=int, default=DEFAULT_MAX_UDP_PAYLOAD,
                        metavar="BYTES", help="largest UDP response, advertised in EDNS "
                                              f"(default: {DEFAULT_MAX_UDP_PAYLOAD})")
    parser.add_argument("--tcp-idle-timeout", type=float, default=DEFAULT_TCP_IDLE_TIMEOUT,
                        metavar="SECONDS", help="close TCP connections that start no query "
                                                "this long after the last answer "
                                                f"(default: {DEFAULT_TCP_IDLE_TIMEOUT:g})")
    parser.add_argument("--tcp-message-timeout", type=float,
                        default=DEFAULT_TCP_MESSAGE_TIMEOUT, metavar="SECONDS",
                        help="close TCP connections that do not finish a query this long "
                             "after its first byte "
                             f"(default: {DEFAULT_TCP_MESSAGE_TIMEOUT:g})")
    parser.add_argument("--max-tcp-connections", type=int, default=DEFAULT_MAX_TCP_CONNECTIONS,
                        metavar="N", help="open TCP connections; a new one closes the least "
                                          "recently useful (default: "
                                          f"{DEFAULT_MAX_TCP_CONNECTIONS})")
    parser.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_SIZE,
                        metavar="ENTRIES", help="encoded responses kept per transport "
                                                f"(default: {DEFAULT_CACHE_SIZE}; 0 = none)")
    parser.add_argument("--max-zone-records", type=int, default=DEFAULT_MAX_RECORDS,
                        metavar="N", help="records one zone may hold "
                                          f"(default: {DEFAULT_MAX_RECORDS})")


def config_from(args: argparse.Namespace) -> DnsServiceConfig:
    """The service config from the flags above."""
    return DnsServiceConfig(zone_files=tuple(args.zones), max_udp_payload=args.max_udp_size,
                            cache_size=args.cache_size, tcp_idle_timeout=args.tcp_idle_timeout,
                            tcp_message_timeout=args.tcp_message_timeout,
                            max_tcp_connections=args.max_tcp_connections,
                            max_zone_records=args.max_zone_records)


def load(config: DnsServiceConfig, paths: tuple[str, ...] | list[str] | None = None) -> ZoneSet:
    """The zone files (`config`'s, or `paths`) under the config's limits; ZoneError names
    the file that failed."""
    files = config.zone_files if paths is None else paths
    return load_zones(files, max_records=config.max_zone_records)


def dns_server(scheduler: Scheduler, config: DnsServiceConfig) -> DnsServer:
    """Load the zones and make the server every UDP endpoint and TCP connection shares.
    Raises ZoneError (naming the file) or ValueError (a limit out of range)."""
    return DnsServer(load(config), scheduler, max_udp_payload=config.max_udp_payload,
                     cache_size=config.cache_size, tcp_idle_timeout=config.tcp_idle_timeout,
                     tcp_message_timeout=config.tcp_message_timeout,
                     max_tcp_connections=config.max_tcp_connections)


def protocol_factory(scheduler: Scheduler,
                     config: DnsServiceConfig | None = None) -> ProtocolFactory:
    """DNS over TCP, for hosts that run stream protocols only (`python -m adapters`)."""
    if config is None:
        raise ValueError("the DNS server needs zone files: pass a DnsServiceConfig "
                         "(--zone FILE on the command line)")
    return dns_server(scheduler, config).stream_protocol


def describe_query(wire: bytes) -> str:
    """'example.com. IN A' for a query's first question (for a query log line), or why the
    bytes are not a query. Parses the message: call it only when the line is logged."""
    try:
        message = dns.message.from_wire(wire, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError) as exc:
        return f"malformed ({len(wire)} bytes: {exc})"
    if not message.question:
        return "no question"
    question = message.question[0]
    return (f"{question.name} {dns.rdataclass.to_text(question.rdclass)} "
            f"{dns.rdatatype.to_text(question.rdtype)}")
