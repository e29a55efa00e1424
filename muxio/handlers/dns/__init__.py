"""DNS, written once against the handler API: an authoritative server and a resolver.

- `zones`: zone files (dnspython) indexed for lookups; `ZoneSet`, `load_zones`; only
  regular files, bounded records and `$INCLUDE` depth.
- `lookup`: the authoritative lookup on dnspython objects (the reference algorithm).
- `wire`, `compiled`: the minimal query parser and the compiled answer path (wire-format
  templates per (name, type), rendered once from `lookup`).
- `answer`: the sans-I/O answering core (query bytes -> response bytes): the compiled
  path, dnspython for the rest.
- `server`: `DnsServer` (zones, response caches, reload) and its UDP/TCP protocols.
- `client`: the sans-I/O `Exchange` core and the `Resolver` that drives it over a
  `Network` (`muxio.transports.network.LoopNetwork` on a muxio loop).
- `hosting`: `dns_server(scheduler, config)`, `protocol_factory` and the options, for every
  host (`muxio serve dns`, `python -m adapters --service dns`; see `muxio.handlers`).
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
from muxio.handlers.dns.hosting import (
    ALPN,
    DESCRIPTION,
    SERVICE_PORT,
    DnsServiceConfig,
    add_arguments,
    config_from,
    describe_query,
    dns_server,
    protocol_factory,
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
    # hosting shape (muxio.handlers)
    "ALPN", "DESCRIPTION", "SERVICE_PORT", "DnsServiceConfig", "add_arguments", "config_from",
    "describe_query", "dns_server", "protocol_factory",
]
