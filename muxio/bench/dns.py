"""`muxio bench dns`: queries per second measured by dnsperf, muxio beside real DNS servers.

    muxio bench dns [--backends epoll,poll] [--peers nsd,twisted] [--workers 1,2]

Before any target starts, one zone file and one query file are written to a temporary
directory; every target serves that same file on UDP and TCP (dnsperf asks over UDP):
muxio on each backend (`muxio serve dns --zone ...`, with `--workers N` as asked), and the
peers that can host an authoritative zone: nsd (the reference: a C server built for this;
run with response-rate limiting off, which would otherwise drop most loopback traffic) and
Twisted Names. asyncio and uvloop host muxio's DNS handler over TCP only
(`python -m adapters`), which is not this workload, so they are not peers here.

dnsperf runs with up to `OUTSTANDING` queries in flight and no rate limit for the round's
duration; a round where it reports lost queries still counts its completed ones (the
figure is completed queries per second), and the loss is shown in the table.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxio.bench.runner import BenchError, Target, Workload, pin

ORIGIN = "bench.example."
HOSTS = 200
OUTSTANDING = 200
DNS_PEERS = ("nsd", "twisted")


def write_zone(path: Path) -> None:
    """A zone nsd, Twisted Names and muxio all parse: apex records, a CNAME, HOSTS hosts
    with A and AAAA, a wildcard."""
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 3600",
             f"@ IN SOA ns1.{ORIGIN} hostmaster.{ORIGIN} 1 7200 3600 1209600 300",
             f"@ IN NS ns1.{ORIGIN}", f"@ IN MX 10 mail.{ORIGIN}", '@ IN TXT "v=spf1 -all"',
             "@ IN A 192.0.2.1", "ns1 IN A 192.0.2.53", "mail IN A 192.0.2.25",
             f"www IN CNAME {ORIGIN}", "*.wild IN A 192.0.2.99"]
    for index in range(HOSTS):
        lines.append(f"host{index} IN A 198.51.100.{index % 250}")
        lines.append(f"host{index} IN AAAA 2001:db8::{index:x}")
    path.write_text("\n".join(lines) + "\n")


def write_queries(path: Path) -> None:
    """Mostly host lookups, some AAAA, apex MX/TXT, a CNAME, a wildcard, an NXDOMAIN."""
    lines = []
    for index in range(HOSTS):
        lines.append(f"host{index}.{ORIGIN} A")
        if index % 4 == 0:
            lines.append(f"host{index}.{ORIGIN} AAAA")
    for _ in range(5):
        lines += [f"{ORIGIN} MX", f"{ORIGIN} TXT", f"www.{ORIGIN} A", f"x.wild.{ORIGIN} A",
                  f"missing.{ORIGIN} A"]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class DnsBench:
    """The files every target serves, and the dnsperf load over them."""

    directory: Path
    zone: Path
    queries: Path
    lost: dict[int, int]
    """Queries dnsperf reported lost, by server port (shown beside the rates)."""

    @classmethod
    def prepare(cls, directory: Path) -> DnsBench:
        if shutil.which("dnsperf") is None:
            raise BenchError("dnsperf is not installed: apt-get install dnsperf")
        bench = cls(directory, directory / "bench.zone", directory / "queries.txt", {})
        write_zone(bench.zone)
        write_queries(bench.queries)
        return bench

    def workload(self) -> Workload:
        return Workload("dns", "dns", "query",
                        f"dnsperf over UDP, {OUTSTANDING} queries in flight, no rate limit "
                        f"({HOSTS} hosts: A/AAAA, MX, TXT, CNAME, wildcard, NXDOMAIN)",
                        self.load, ("--zone", str(self.zone)))

    def load(self, port: int, duration: float, cpus: set[int] | None) -> int:
        seconds = max(1, round(duration))
        with subprocess.Popen(
                ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(self.queries),
                 "-l", str(seconds), "-q", str(OUTSTANDING), "-t", "5"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
            pin(process.pid, cpus)
            out, err = process.communicate(timeout=seconds + 60)
        completed = re.search(r"Queries completed:\s+(\d+)", out)
        lost = re.search(r"Queries lost:\s+(\d+)", out)
        if process.returncode != 0 or completed is None or lost is None:
            raise BenchError(f"dnsperf failed ({process.returncode}): {(out + err)[-500:]}")
        self.lost[port] = self.lost.get(port, 0) + int(lost.group(1))
        return int(completed.group(1))

    def peer(self, name: str) -> Target:
        """nsd or Twisted Names serving the zone (they print no serving line: the port is
        probed with a query)."""
        if name == "nsd":
            if shutil.which("nsd") is None:
                raise BenchError("nsd is not installed: apt-get install nsd (or --peers "
                                 "twisted, or --peers '')")
            return Target("nsd", (), "peer", command=self._nsd_command, ready=answers)
        if name == "twisted":
            try:
                importlib.import_module("twisted.names")
            except ImportError:
                raise BenchError("Twisted Names is not installed: pip install twisted (or "
                                 "muxio[bench])") from None
            return Target("twisted", (), "peer", ready=answers,
                          command=lambda port: (sys.executable, "-m", "muxio.bench.dns",
                                                "twisted", str(port), str(self.zone)))
        raise BenchError(f"{name!r} cannot host the DNS workload; peers: "
                         f"{', '.join(DNS_PEERS)}")

    def _nsd_command(self, port: int) -> list[str]:
        work = self.directory / f"nsd-{port}"
        work.mkdir(exist_ok=True)
        shutil.copy(self.zone, work / "bench.zone")
        conf = work / "nsd.conf"
        conf.write_text(f"""server:
    ip-address: 127.0.0.1
    port: {port}
    do-ip6: no
    zonesdir: "{work}"
    pidfile: "{work}/nsd.pid"
    database: ""
    xfrdfile: "{work}/xfrd.state"
    zonelistfile: "{work}/zone.list"
    logfile: "{work}/nsd.log"
    username: ""
    chroot: ""
    server-count: 1
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: {ORIGIN}
    zonefile: bench.zone
""")
        return ["nsd", "-d", "-c", str(conf)]


def answers(port: int) -> bool:
    """True once a server on 127.0.0.1:`port` answers an SOA query over UDP."""
    import dns.exception
    import dns.message
    import dns.query

    try:
        dns.query.udp(dns.message.make_query(ORIGIN, "SOA"), "127.0.0.1", port=port,
                      timeout=0.2)
    except (dns.exception.Timeout, OSError):
        return False
    return True


def serve_twisted(port: int, zone: str) -> None:
    """Twisted Names, authoritative for `zone`, on UDP and TCP (a child process)."""
    # Untyped library: reached through Any so that the rest stays strictly typed.
    epollreactor: Any = importlib.import_module("twisted.internet.epollreactor")
    epollreactor.install()
    reactor: Any = importlib.import_module("twisted.internet.reactor")
    authority: Any = importlib.import_module("twisted.names.authority")
    server: Any = importlib.import_module("twisted.names.server")
    twisted_dns: Any = importlib.import_module("twisted.names.dns")
    factory = server.DNSServerFactory(authorities=[authority.BindAuthority(zone)], verbose=0)
    reactor.listenUDP(port, twisted_dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    reactor.run()


def main(argv: list[str]) -> int:
    """`python -m muxio.bench.dns twisted PORT ZONE`."""
    if len(argv) != 3 or argv[0] != "twisted":
        print("usage: python -m muxio.bench.dns twisted PORT ZONE", file=sys.stderr)
        return 2
    serve_twisted(int(argv[1]), argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
