"""DNS queries per second: `muxio serve dns` on each backend, beside nsd and Twisted Names,
all serving the same zone file, measured by dnsperf. Two query sets, interleaved rounds,
medians and ratios in one table per set.

    python benchmarks/dns_perf.py [--seconds 10] [--rounds 2] [--sets repeated,cache-busting]
                                  [--backends epoll,poll] [--no-twisted] [--json out.json]

Query sets:

- `repeated`: a few hundred distinct queries (host A/AAAA, apex MX/TXT/NS, a CNAME, an
  NXDOMAIN) asked over and over: almost every answer can come from a response cache.
- `cache-busting`: `--distinct` (200 000) distinct random names, never repeated within a
  cache's reach: 50 % `<random>.wild.<zone> A` answered by a wildcard, 30 %
  `<random>.<zone> A` (NXDOMAIN with the SOA), 20 % `<random>.wild.<zone> TXT` (the
  wildcard's TXT). This is the shape of a random-subdomain ("water torture") flood: every
  query has to be answered from the zone, not from a cache of earlier responses.

Each server runs in its own process pinned to CPU 0, dnsperf pinned to CPU 1 (when the
machine has two), with up to `--outstanding` queries in flight and no rate limit. Every
server is started once; rounds are interleaved (every target for one set, then the next
set, then the next round) so a drift in machine speed hits every target alike.

Figures:
- q/s: dnsperf's queries per second (higher is better);
- CPU us/q: the server's user+system CPU time over the run (the process and its children:
  nsd answers from a forked child) divided by the queries completed (lower is better);
  unlike q/s it does not depend on how fast dnsperf is;
- lost: queries without an answer after dnsperf's 5 s timeout; "kernel drops" is the
  growth of the kernel's UDP RcvbufErrors during the run (a socket buffer overflowed: the
  server's 4 MiB one cannot with 1000 queries in flight, so drops point at dnsperf's own
  sockets, hence `--client-buffer-kb`).

Before the load, distinct queries of each set (all of the repeated set, a sample of the
cache-busting one) are asked once and compared with nsd's answers ("complete" = same rcode,
same answer and authority records, none truncated): a server that answers fast but leaves
out the CNAME target or the SOA does not count as fast. nsd runs with response-rate
limiting off (otherwise it drops most loopback traffic).

`--attack tcp-drip` measures something else (issue 13): `--drippers` TCP connections that
each send one byte of a query every 8 s and never finish it, while a good client asks one
TCP query and one UDP query every 0.1 s for `--seconds`. Reported per server: the good
client's TCP answers (and latency median/p99/max), UDP answers, how many dripping
connections the server still holds at the end, its RSS and CPU.

This is a measurement, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's muxio

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from muxio.bench.runner import cpu_sets, descendants, pin, process_cpu_seconds
from muxio.testing.matrix import matrix_backends

REPO = Path(__file__).resolve().parents[1]
ORIGIN = "bench.example."
HOSTS = 200
SETS = ("repeated", "cache-busting")
REFERENCE = "nsd"
COMPLETENESS_SAMPLE = 300
"""Distinct cache-busting queries compared with nsd before the load."""


def write_zone(path: Path) -> None:
    """A zone all three servers parse (Twisted's parser knows no CAA, SRV or relative
    PTR owners): apex records, a CNAME, HOSTS hosts with A and AAAA, and a wildcard."""
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 3600",
             f"@ IN SOA ns1.{ORIGIN} hostmaster.{ORIGIN} 1 7200 3600 1209600 300",
             f"@ IN NS ns1.{ORIGIN}", f"@ IN NS ns2.{ORIGIN}", f"@ IN MX 10 mail.{ORIGIN}",
             '@ IN TXT "v=spf1 -all"', "@ IN A 192.0.2.1", "ns1 IN A 192.0.2.53",
             "ns2 IN A 192.0.2.54", "mail IN A 192.0.2.25", f"www IN CNAME {ORIGIN}",
             "*.wild IN A 192.0.2.99", '*.wild IN TXT "wildcard"']
    for index in range(HOSTS):
        lines.append(f"host{index} IN A 198.51.100.{index % 250}")
        lines.append(f"host{index} IN AAAA 2001:db8::{index:x}")
    path.write_text("\n".join(lines) + "\n")


def repeated_set() -> list[tuple[str, str]]:
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


def cache_busting_set(count: int, seed: int = 22) -> list[tuple[str, str]]:
    """`count` distinct random names: 50 % wildcard A, 30 % NXDOMAIN, 20 % wildcard TXT."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    seen: set[str] = set()
    queries = []
    while len(queries) < count:
        label = "".join(rng.choices(alphabet, k=rng.randint(8, 16)))
        if label in seen:
            continue
        seen.add(label)
        draw = rng.random()
        if draw < 0.5:
            queries.append((f"{label}.wild.{ORIGIN}", "A"))
        elif draw < 0.8:
            queries.append((f"{label}.{ORIGIN}", "A"))
        else:
            queries.append((f"{label}.wild.{ORIGIN}", "TXT"))
    return queries


@dataclass
class Run:
    qps: float
    cpu_us_per_query: float
    completed: int
    lost: int
    latency_ms: float
    kernel_drops: int


@dataclass
class TargetRuns:
    name: str
    complete: dict[str, str] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)
    note: str = ""

    def median(self, query_set: str, attribute: str) -> float | None:
        runs = self.runs.get(query_set)
        if not runs:
            return None
        return float(statistics.median(getattr(run, attribute) for run in runs))


class BenchError(Exception):
    """A server or dnsperf could not be started or did not report."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream:
        stream.bind(("127.0.0.1", 0))
        port = int(stream.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
            datagram.bind(("127.0.0.1", port))
        return port


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its descendants still running (nsd forks its
    server processes), from /proc."""
    total = 0.0
    for current in [pid, *descendants(pid)]:
        try:
            total += process_cpu_seconds(current)
        except OSError:
            continue  # exited meanwhile
    return total


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    probe = dns.message.make_query(ORIGIN, "SOA")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server exited with {process.returncode}")
        try:
            dns.query.udp(probe, "127.0.0.1", port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, ConnectionRefusedError):
            continue
    raise BenchError(f"server on port {port} did not answer within {timeout} s")


def answer_of(port: int, name: str, rdtype: str) -> object:
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    query.flags &= ~dns.flags.RD
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)

    def records(section: list[Any]) -> frozenset[str]:
        return frozenset(f"{rrset.name.to_text().lower()} {rrset.ttl} {rrset.rdtype} "
                         f"{rdata.to_text()}" for rrset in section for rdata in rrset)

    return (dns.rcode.to_text(reply.rcode()), records(reply.answer), records(reply.authority),
            bool(reply.flags & dns.flags.TC))


def udp_receive_buffer_errors() -> int:
    with open("/proc/net/snmp") as handle:
        rows = [line.split() for line in handle if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def run_dnsperf(port: int, data: Path, args: argparse.Namespace,
                cpus: set[int] | None) -> tuple[float, int, int, float]:
    """(queries per second, completed, lost, average latency in ms)."""
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-l",
            str(args.seconds), "-q", str(args.outstanding), "-c", str(args.clients), "-t", "5",
            "-b", str(args.client_buffer_kb)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        pin(process.pid, cpus)
        out, err = process.communicate(timeout=args.seconds + 60)

    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([\d.]+)", out)
        if match is None:
            raise BenchError(f"dnsperf printed no '{label}': {out}{err}")
        return float(match.group(1))

    return (number("Queries per second"), int(number("Queries completed")),
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


def serve_floor(port: int, zone: str) -> None:
    """The least a Python UDP server can do per query (run as a child process with
    `--floor`): one blocking socket, no poller, no loop, no transport, no protocol object;
    `recvfrom`, a dict hit on the query after its ID, `sendto` of the ID and the cached
    response. A miss is answered by muxio's own `Responder` (the compiled zone) and cached
    without bound. On the repeated set every query after the first is a hit: this is the
    per-datagram floor of any pure-Python server built on the socket module, and what
    bounds `muxio serve dns` against nsd (which batches with recvmmsg/sendmmsg in C)."""
    from muxio.handlers.dns.answer import Responder
    from muxio.handlers.dns.zones import load_zones

    responder = Responder(load_zones([zone]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    cache: dict[bytes, bytes] = {}
    recvfrom, sendto, get = sock.recvfrom, sock.sendto, cache.get
    while True:
        data, addr = recvfrom(65535)
        key = data[2:]
        cached = get(key)
        if cached is None:
            response, _outcome = responder.respond(data, tcp=False)
            if response is None:
                continue
            cached = cache[key] = response[2:]
        sendto(data[:2] + cached, addr)


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
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(name: str, argv_for_port: Callable[[int], list[str]],
          cpus: set[int] | None) -> Server:
    port = free_port()
    # cwd "/": `python -m` puts the working directory first on sys.path, before
    # PYTHONPATH, which would hide the checkout a target asks for.
    process = subprocess.Popen(argv_for_port(port), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd="/")
    pin(process.pid, cpus)
    server = Server(name, process, port)
    try:
        wait_ready(port, process)
    except BaseException:
        server.stop()
        raise
    return server


def check_answers(server: Server, samples: dict[str, list[tuple[str, str]]],
                  reference: dict[str, dict[tuple[str, str], object]] | None,
                  ) -> tuple[dict[str, str], dict[str, dict[tuple[str, str], object]]]:
    """Ask every sampled query once; compare with the reference server's answers."""
    complete: dict[str, str] = {}
    seen: dict[str, dict[tuple[str, str], object]] = {}
    for query_set, queries in samples.items():
        seen[query_set] = {query: answer_of(server.port, *query) for query in queries}
        if reference is None:
            complete[query_set] = "reference"
            continue
        wrong = [query for query, answer in reference[query_set].items()
                 if seen[query_set].get(query) != answer]
        complete[query_set] = "yes" if not wrong else (
            f"no, {len(wrong)}/{len(queries)} differ: "
            + ", ".join(" ".join(query) for query in wrong[:2]))
    return complete, seen


def table(query_set: str, results: list[TargetRuns]) -> str:
    reference = next((r for r in results if r.name == REFERENCE), None)
    ref_qps = reference.median(query_set, "qps") if reference else None
    ref_cpu = reference.median(query_set, "cpu_us_per_query") if reference else None
    lines = [f"| {query_set} | q/s (median) | min-max | x nsd | CPU us/q | x nsd | lost "
             f"| kernel drops | latency ms | complete answers |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for result in results:
        runs = result.runs.get(query_set)
        if not runs:
            lines.append(f"| {result.name} | - | - | - | - | - | - | - | - | "
                         f"{result.note or result.complete.get(query_set, '')} |")
            continue
        qps = result.median(query_set, "qps") or 0.0
        cpu = result.median(query_set, "cpu_us_per_query") or 0.0
        latency = result.median(query_set, "latency_ms") or 0.0
        spread = f"{min(r.qps for r in runs):,.0f}-{max(r.qps for r in runs):,.0f}"
        lost = sum(r.lost for r in runs)
        total = sum(r.completed + r.lost for r in runs)
        drops = sum(r.kernel_drops for r in runs)
        ratio_qps = f"{qps / ref_qps:.2f}" if ref_qps else "-"
        ratio_cpu = f"{cpu / ref_cpu:.2f}" if ref_cpu else "-"
        lines.append(f"| {result.name} | {qps:,.0f} | {spread} | {ratio_qps} | {cpu:.1f} | "
                     f"{ratio_cpu} | {lost}/{total} | {drops} | {latency:.2f} | "
                     f"{result.complete.get(query_set, '')} |")
    return "\n".join(lines)


@dataclass
class AttackResult:
    name: str
    tcp_asked: int = 0
    tcp_answered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    udp_asked: int = 0
    udp_answered: int = 0
    drippers_held: int = 0
    rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    note: str = ""


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (nsd forks), in MB."""
    total = 0
    for current in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def drip_attack(server: Server, args: argparse.Namespace) -> AttackResult:
    """Drippers plus one good client against one server (see the module docstring)."""
    result = AttackResult(server.name)
    stop = threading.Event()
    drippers: list[socket.socket] = []
    for _ in range(args.drippers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", server.port))
        except BlockingIOError:
            pass
        drippers.append(sock)

    def drip() -> None:
        # First a length prefix's high byte (a message of 256 bytes or more), then one
        # byte of it every 8 s: never a complete message.
        byte = b"\x01"
        while not stop.is_set():
            for sock in drippers:
                try:
                    sock.send(byte)
                except OSError:
                    pass  # closed by the server, or not connected yet
            byte = b"x"
            stop.wait(8.0)

    dripper_thread = threading.Thread(target=drip, daemon=True)
    dripper_thread.start()
    query = dns.message.make_query(ORIGIN, "SOA")
    cpu = tree_cpu_seconds(server.process.pid)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        result.tcp_asked += 1
        try:
            dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=2.0)
            result.tcp_answered += 1
            result.latencies_ms.append((time.monotonic() - started) * 1000)
        except (dns.exception.DNSException, OSError):
            pass
        result.udp_asked += 1
        try:
            dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2.0)
            result.udp_answered += 1
        except (dns.exception.DNSException, OSError):
            pass
        stop.wait(max(0.0, 0.1 - (time.monotonic() - started)))
    result.cpu_seconds = tree_cpu_seconds(server.process.pid) - cpu
    result.rss_mb = rss_mb(server.process.pid)
    stop.set()
    dripper_thread.join(10)
    for sock in drippers:
        try:
            # Still open on the server's side: a peek finds no EOF and no reset.
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                continue
        except BlockingIOError:
            result.drippers_held += 1
        except OSError:
            pass
        finally:
            sock.close()
    return result


def attack_table(results: list[AttackResult], args: argparse.Namespace) -> str:
    lines = [f"| tcp-drip, {args.drippers} drippers, {args.seconds} s | good TCP answered "
             f"| latency ms median / p99 / max | good UDP answered | drippers held "
             f"| server RSS MB | server CPU s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        if result.note:
            lines.append(f"| {result.name} | {result.note} | | | | | |")
            continue
        latencies = sorted(result.latencies_ms) or [float("nan")]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        lines.append(f"| {result.name} | {result.tcp_answered}/{result.tcp_asked} | "
                     f"{statistics.median(latencies):.1f} / {p99:.1f} / {latencies[-1]:.1f} | "
                     f"{result.udp_answered}/{result.udp_asked} | {result.drippers_held} | "
                     f"{result.rss_mb:.0f} | {result.cpu_seconds:.2f} |")
    return "\n".join(lines)


def run_attack(args: argparse.Namespace,
               commands: list[tuple[str, Callable[[int], list[str]]]]) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.drippers + 100
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    server_cpus, _ = cpu_sets()
    results = []
    for name, argv_for_port in commands:
        try:
            server = start(name, argv_for_port, server_cpus)
        except (BenchError, OSError) as exc:
            results.append(AttackResult(name, note=str(exc)))
            continue
        # The usual default limit of open files, which the attack is about (this
        # machine's may be higher): a server holding every dripping connection runs out.
        for pid in [server.process.pid, *descendants(server.process.pid)]:
            resource.prlimit(pid, resource.RLIMIT_NOFILE,
                             (args.server_nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        try:
            results.append(drip_attack(server, args))
        finally:
            server.stop()
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(attack_table(results, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="dnsperf run per target")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    parser.add_argument("--sets", default=",".join(SETS), help="query sets to run")
    parser.add_argument("--distinct", type=int, default=200_000,
                        help="distinct names in the cache-busting set")
    parser.add_argument("--outstanding", type=int, default=1000,
                        help="queries in flight (dnsperf -q)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf sockets (-c)")
    parser.add_argument("--client-buffer-kb", type=int, default=2048,
                        help="dnsperf socket buffers (-b): with the OS default (208 KiB) "
                             "a short stall of dnsperf overflows its own sockets and shows "
                             "up as lost queries whatever the server")
    parser.add_argument("--backends", default=",".join(matrix_backends()))
    parser.add_argument("--muxio-args", default="",
                        help="extra arguments for `muxio serve dns` (e.g. '--cache-size 0')")
    parser.add_argument("--no-twisted", action="store_true", help="leave Twisted Names out")
    parser.add_argument("--floor", action="store_true",
                        help="also run the per-datagram floor of a pure-Python UDP server "
                             "(blocking recvfrom, a dict hit, sendto: see serve_floor)")
    parser.add_argument("--serve-floor", nargs=2, metavar=("PORT", "ZONE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="also run `muxio serve dns` from this checkout (e.g. an export "
                             "of main) as 'baseline BACKEND'")
    parser.add_argument("--json", default=None, help="also write every run here")
    parser.add_argument("--attack", choices=["tcp-drip"], default=None,
                        help="instead of dnsperf: a good client's service under an attack")
    parser.add_argument("--drippers", type=int, default=1100,
                        help="dripping TCP connections for --attack tcp-drip")
    parser.add_argument("--server-nofile", type=int, default=1024,
                        help="open-file limit of the servers under --attack (default: 1024, "
                             "the usual default)")
    parser.add_argument("--serve-twisted", nargs=2, metavar=("PORT", "ZONE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_twisted:
        serve_twisted(int(args.serve_twisted[0]), args.serve_twisted[1])
        return
    if args.serve_floor:
        serve_floor(int(args.serve_floor[0]), args.serve_floor[1])
        return
    if shutil.which("dnsperf") is None:
        sys.exit("dnsperf is not installed: apt-get install dnsperf")
    # The servers run `python -m muxio`: make them import this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    query_sets = [name for name in args.sets.split(",") if name]
    unknown = set(query_sets) - set(SETS)
    if unknown:
        sys.exit(f"unknown query set(s) {', '.join(sorted(unknown))}: choose from "
                 f"{', '.join(SETS)}")
    server_cpus, load_cpus = cpu_sets()
    print(f"dnsperf -q {args.outstanding} -c {args.clients} -b {args.client_buffer_kb} "
          f"-l {args.seconds}; {args.rounds} interleaved rounds; server on CPU {server_cpus}, "
          f"dnsperf on CPU {load_cpus}; Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="muxio-dns-bench-") as tmp:
        directory = Path(tmp)
        zone = directory / "bench.zone"
        write_zone(zone)
        sets = {"repeated": repeated_set(), "cache-busting": cache_busting_set(args.distinct)}
        data: dict[str, Path] = {}
        samples: dict[str, list[tuple[str, str]]] = {}
        for name in query_sets:
            data[name] = directory / f"{name}.txt"
            data[name].write_text("".join(f"{qname} {rdtype}\n" for qname, rdtype in sets[name]))
            distinct = sorted(set(sets[name]))
            samples[name] = distinct if name == "repeated" else \
                random.Random(13).sample(distinct, min(COMPLETENESS_SAMPLE, len(distinct)))

        extra = args.muxio_args.split()
        commands: list[tuple[str, Callable[[int], list[str]]]] = []
        if shutil.which("nsd"):
            commands.append((REFERENCE, lambda port: nsd_command(directory, zone, port)))
        for backend in [name for name in args.backends.split(",") if name]:
            commands.append((f"muxio {backend}", lambda port, backend=backend: [
                sys.executable, "-m", "muxio", "serve", "dns", "--zone", str(zone), "--port",
                str(port), "--host", "127.0.0.1", "--backend", backend, *extra]))
            if args.baseline:
                # The same server from another checkout (say, before a change), measured
                # in the same run: before/after ratios without the drift between runs.
                commands.append((f"baseline {backend}", lambda port, backend=backend: [
                    "env", f"PYTHONPATH={args.baseline}", sys.executable, "-m", "muxio",
                    "serve", "dns", "--zone", str(zone), "--port", str(port), "--host",
                    "127.0.0.1", "--backend", backend]))
        if args.floor:
            commands.append(("python floor", lambda port: [
                sys.executable, __file__, "--serve-floor", str(port), str(zone)]))
        if not args.no_twisted:
            commands.append(("Twisted Names", lambda port: [
                sys.executable, __file__, "--serve-twisted", str(port), str(zone)]))

        if args.attack:
            run_attack(args, commands)
            return
        results = [TargetRuns(name) for name, _ in commands]
        if not shutil.which("nsd"):
            results.insert(0, TargetRuns(REFERENCE, note="not installed: apt-get install nsd"))
        servers: list[tuple[Server, TargetRuns]] = []
        reference: dict[str, dict[tuple[str, str], object]] | None = None
        try:
            for (name, argv_for_port), result in zip(
                    commands, [r for r in results if not r.note], strict=True):
                try:
                    server = start(name, argv_for_port, server_cpus)
                except (BenchError, OSError) as exc:
                    result.note = str(exc)
                    continue
                servers.append((server, result))
                result.complete, seen = check_answers(server, samples, reference)
                if name == REFERENCE:
                    reference = seen
            for round_number in range(args.rounds):
                for query_set in query_sets:
                    for server, result in servers:
                        cpu = tree_cpu_seconds(server.process.pid)
                        drops = udp_receive_buffer_errors()
                        try:
                            qps, completed, lost, latency = run_dnsperf(
                                server.port, data[query_set], args, load_cpus)
                        except BenchError as exc:
                            result.note = str(exc)[:200]
                            continue
                        cpu = tree_cpu_seconds(server.process.pid) - cpu
                        run = Run(qps, cpu / max(completed, 1) * 1e6, completed, lost,
                                  latency, udp_receive_buffer_errors() - drops)
                        result.runs.setdefault(query_set, []).append(run)
                        print(f"round {round_number + 1}/{args.rounds} {query_set:>13} "
                              f"{server.name:>16}: {qps:9,.0f} q/s "
                              f"{run.cpu_us_per_query:7.1f} us CPU/q  lost {lost}",
                              file=sys.stderr, flush=True)
        finally:
            for server, _ in servers:
                server.stop()

    for query_set in query_sets:
        print()
        print(table(query_set, results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(result) for result in results], indent=2))


if __name__ == "__main__":
    main()
