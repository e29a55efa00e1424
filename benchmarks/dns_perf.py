"""DNS queries per second: `muxio serve dns` on each backend, beside nsd and Twisted Names,
all serving the same zone file, measured by dnsperf. One run; ratios in a table.

    python benchmarks/dns_perf.py [--seconds 10] [--outstanding 1000] [--clients 4]
                                  [--backends epoll,poll] [--json out.json]

Each server runs in its own process pinned to CPU 0, dnsperf pinned to CPU 1 (when the
machine has two), with up to `--outstanding` queries in flight and no rate limit. Before
the load, every distinct query of the mix is asked once and the answer section compared
with nsd's ("complete" = same rcode and answer RRs for every query, none truncated): a
server that answers fast but leaves out the CNAME target does not count as fast.
nsd runs with response-rate limiting off (otherwise it drops most loopback traffic).
"kernel drops" is the growth of the kernel's UDP RcvbufErrors during a run: with at most
`--outstanding` queries in flight the server's 4 MiB buffer cannot overflow, so drops
there point at the load generator's sockets (hence `--client-buffer-kb`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
from rich.console import Console
from rich.table import Table

from muxio.testing.matrix import matrix_backends

ORIGIN = "bench.example."
HOSTS = 200


def write_zone(path: Path) -> None:
    """A zone all three servers parse (Twisted's parser knows no CAA, SRV or relative
    PTR owners): apex records, a CNAME, and HOSTS hosts with A and AAAA."""
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 3600",
             f"@ IN SOA ns1.{ORIGIN} hostmaster.{ORIGIN} 1 7200 3600 1209600 300",
             f"@ IN NS ns1.{ORIGIN}", f"@ IN NS ns2.{ORIGIN}", f"@ IN MX 10 mail.{ORIGIN}",
             '@ IN TXT "v=spf1 -all"', "@ IN A 192.0.2.1", "ns1 IN A 192.0.2.53",
             "ns2 IN A 192.0.2.54", "mail IN A 192.0.2.25", f"www IN CNAME {ORIGIN}"]
    for index in range(HOSTS):
        lines.append(f"host{index} IN A 198.51.100.{index % 250}")
        lines.append(f"host{index} IN AAAA 2001:db8::{index:x}")
    path.write_text("\n".join(lines) + "\n")


def query_mix() -> list[tuple[str, str]]:
    """Mostly host lookups, some AAAA, apex MX/TXT/NS, a CNAME, an NXDOMAIN."""
    queries = []
    for index in range(HOSTS):
        queries.append((f"host{index}.{ORIGIN}", "A"))
        if index % 4 == 0:
            queries.append((f"host{index}.{ORIGIN}", "AAAA"))
    for _ in range(5):
        queries += [(ORIGIN, "MX"), (ORIGIN, "TXT"), (f"www.{ORIGIN}", "A"),
                    (f"missing.{ORIGIN}", "A"), (ORIGIN, "NS")]
    return queries


@dataclass
class Result:
    target: str
    qps: float | None = None
    sent: int = 0
    lost: int = 0
    latency_ms: float | None = None
    kernel_drops: int = 0
    """Growth of the kernel's UDP RcvbufErrors during the run (a socket buffer overflowed:
    the server's or dnsperf's); explains lost queries."""
    complete: str = ""
    note: str = ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream:
        stream.bind(("127.0.0.1", 0))
        port = int(stream.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
            datagram.bind(("127.0.0.1", port))
        return port


def pinned(cpu: int | None) -> dict[str, object]:
    if cpu is None:
        return {}
    return {"preexec_fn": lambda: os.sched_setaffinity(0, {cpu})}


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    probe = dns.message.make_query(ORIGIN, "SOA")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            dns.query.udp(probe, "127.0.0.1", port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, ConnectionRefusedError):
            continue
    raise RuntimeError(f"server on port {port} did not answer within {timeout} s")


def answer_of(port: int, name: str, rdtype: str) -> tuple[str, frozenset[str], bool]:
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    query.flags &= ~dns.flags.RD
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    records = frozenset(f"{rrset.name.to_text().lower()} {rrset.rdtype} {rdata.to_text()}"
                        for rrset in reply.answer for rdata in rrset)
    return dns.rcode.to_text(reply.rcode()), records, bool(reply.flags & dns.flags.TC)


def answers(port: int, queries: list[tuple[str, str]]) -> dict[tuple[str, str], object]:
    return {query: answer_of(port, *query) for query in sorted(set(queries))}


def udp_receive_buffer_errors() -> int:
    with open("/proc/net/snmp") as handle:
        rows = [line.split() for line in handle if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def run_dnsperf(port: int, data: Path, args: argparse.Namespace,
                cpu: int | None) -> tuple[float, int, int, float]:
    result = subprocess.run(
        ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-l",
         str(args.seconds), "-q", str(args.outstanding), "-c", str(args.clients), "-t", "5",
         "-b", str(args.client_buffer_kb)],
        capture_output=True, text=True, timeout=args.seconds + 60, check=False,
        **pinned(cpu))  # type: ignore[call-overload]
    out = result.stdout

    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([\d.]+)", out)
        if match is None:
            raise RuntimeError(f"dnsperf printed no '{label}': {out}{result.stderr}")
        return float(match.group(1))

    return (number("Queries per second"), int(number("Queries sent")),
            int(number("Queries lost")), number(r"Average Latency \(s\)") * 1000)


def nsd_command(directory: Path, zone: Path, port: int) -> list[str]:
    conf = directory / "nsd.conf"
    conf.write_text(f"""server:
    ip-address: 127.0.0.1
    port: {port}
    do-ip6: no
    zonesdir: "{directory}"
    pidfile: "{directory}/nsd.pid"
    database: ""
    xfrdfile: "{directory}/xfrd.state"
    zonelistfile: "{directory}/zone.list"
    logfile: "{directory}/nsd.log"
    username: ""
    chroot: ""
    server-count: 1
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: {ORIGIN}
    zonefile: {zone.name}
""")
    return ["nsd", "-d", "-c", str(conf)]


def serve_twisted(port: int, zone: str) -> None:
    """Twisted Names, authoritative from the zone file (run as a child process)."""
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


@dataclass
class Bench:
    data: Path
    queries: list[tuple[str, str]]
    args: argparse.Namespace
    cpus: tuple[int | None, int | None]
    reference: dict[tuple[str, str], object] | None = None


def measure(name: str, argv: list[str], port: int,
            bench: Bench) -> tuple[Result, dict[tuple[str, str], object]]:
    result = Result(name)
    data, queries, reference, args, cpus = (bench.data, bench.queries, bench.reference,
                                            bench.args, bench.cpus)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, **pinned(cpus[0]))  # type: ignore[call-overload]
    seen: dict[tuple[str, str], object] = {}
    try:
        wait_ready(port, process)
        seen = answers(port, queries)
        if reference is not None:
            wrong = [query for query, answer in reference.items() if seen.get(query) != answer]
            result.complete = "yes" if not wrong else (
                f"no, {len(wrong)}/{len(reference)} differ: "
                + ", ".join(" ".join(query) for query in wrong[:3]))
        drops = udp_receive_buffer_errors()
        result.qps, result.sent, result.lost, result.latency_ms = run_dnsperf(
            port, data, args, cpus[1])
        result.kernel_drops = udp_receive_buffer_errors() - drops
    except (RuntimeError, OSError, dns.exception.DNSException) as exc:
        result.note = str(exc)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return result, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="dnsperf run per target")
    parser.add_argument("--outstanding", type=int, default=1000,
                        help="queries in flight (dnsperf -q)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf sockets (-c)")
    parser.add_argument("--client-buffer-kb", type=int, default=2048,
                        help="dnsperf socket buffers (-b): with the OS default (208 KiB) "
                             "a short stall of dnsperf overflows its own sockets and shows "
                             "up as lost queries whatever the server")
    parser.add_argument("--backends", default=",".join(matrix_backends()))
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--serve-twisted", nargs=2, metavar=("PORT", "ZONE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_twisted:
        serve_twisted(int(args.serve_twisted[0]), args.serve_twisted[1])
        return
    if shutil.which("dnsperf") is None:
        sys.exit("dnsperf is not installed: apt-get install dnsperf")
    cpus: tuple[int | None, int | None] = (0, 1) if (os.cpu_count() or 1) >= 2 else (None, None)
    console = Console(width=160)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="muxio-dns-bench-") as tmp:
        directory = Path(tmp)
        zone = directory / "bench.zone"
        write_zone(zone)
        queries = query_mix()
        data = directory / "queries.txt"
        data.write_text("".join(f"{name} {rdtype}\n" for name, rdtype in queries))

        bench = Bench(data, queries, args, cpus)
        if shutil.which("nsd"):
            port = free_port()
            nsd, bench.reference = measure("nsd", nsd_command(directory, zone, port), port,
                                           bench)
            nsd.complete = "reference"
        else:
            nsd = Result("nsd", note="not installed: apt-get install nsd")
        for backend in args.backends.split(","):
            port = free_port()
            argv = [sys.executable, "-m", "muxio", "serve", "dns", "--zone", str(zone),
                    "--port", str(port), "--host", "127.0.0.1", "--backend", backend]
            result, _ = measure(f"muxio {backend}", argv, port, bench)
            results.append(result)
            console.print(f"{result.target}: {result.qps or 0:,.0f} q/s {result.note}")
        port = free_port()
        twisted, _ = measure("Twisted Names", [sys.executable, __file__, "--serve-twisted",
                                               str(port), str(zone)],
                             port, bench)
        results += [nsd, twisted]

    table = Table(title=f"DNS, dnsperf -q {args.outstanding} -c {args.clients} "
                        f"-b {args.client_buffer_kb}, "
                        f"{args.seconds} s per target, server on CPU {cpus[0]}, "
                        f"dnsperf on CPU {cpus[1]}")
    for column in ("target", "queries/s", "lost", "kernel drops", "avg latency ms",
                   "complete answers", "x nsd", "x Twisted"):
        table.add_column(column, justify="left" if column in ("target", "complete answers")
                         else "right")
    for result in results:
        if result.qps is None:
            table.add_row(result.target, "-", "-", "-", "-", result.note, "-", "-")
            continue
        ratios = [f"{result.qps / peer.qps:.2f}" if peer.qps else "-" for peer in (nsd, twisted)]
        table.add_row(result.target, f"{result.qps:,.0f}", f"{result.lost}/{result.sent}",
                      str(result.kernel_drops), f"{result.latency_ms:.2f}", result.complete,
                      *ratios)
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(result) for result in results], indent=2))


if __name__ == "__main__":
    main()
