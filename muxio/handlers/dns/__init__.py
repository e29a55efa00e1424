"""DNS, written once against the handler API: an authoritative server and a resolver.

- `zones`: zone files (dnspython) indexed for lookups; `ZoneSet`, `load_zones`.
- `answer`: the sans-I/O answering core (query bytes -> response bytes).
- `server`: `DnsServer` (zones, response caches, reload) and its UDP/TCP protocols.
- `client`: the sans-I/O `Exchange` core and the `Resolver` that drives it over a
  `Network` (`muxio.transports.network.LoopNetwork` on a muxio loop).
"""

from muxio.handlers.dns.answer import DEFAULT_MAX_UDP_PAYLOAD, Responder, lookup
from muxio.handlers.dns.client import Exchange, NameServer, Network, Reply, Resolver, parse_server
from muxio.handlers.dns.errors import (
    DnsError,
    DnsTimeoutError,
    ResolverClosedError,
    ServerAddressError,
    ZoneError,
)
from muxio.handlers.dns.server import DnsDatagramProtocol, DnsServer, DnsStreamProtocol
from muxio.handlers.dns.zones import Zone, ZoneSet, load_zone, load_zones

__all__ = [
    "DEFAULT_MAX_UDP_PAYLOAD",
    "DnsDatagramProtocol",
    "DnsError",
    "DnsServer",
    "DnsStreamProtocol",
    "DnsTimeoutError",
    "Exchange",
    "NameServer",
    "Network",
    "Reply",
    "Resolver",
    "ResolverClosedError",
    "Responder",
    "ServerAddressError",
    "Zone",
    "ZoneError",
    "ZoneSet",
    "load_zone",
    "load_zones",
    "lookup",
    "parse_server",
]
