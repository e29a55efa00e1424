"""`muxio resolve NAME [TYPE] --server HOST:PORT`: ask DNS servers, print like a short dig.

    muxio resolve example.com MX                      # asks `muxio serve dns` on localhost
    muxio resolve big.example.com TXT --server [::1]:5300 --tcp
    muxio resolve example.com --server 192.0.2.53      # any server (port 53 by default)

Without --server it asks localhost on port 5300, where `muxio serve dns` listens by
default, so the pair works together out of the box. `localhost` means 127.0.0.1 (which
`muxio serve --host localhost` always listens on); other servers are IP literals.

Exit status: 0 when a server answered (whatever the rcode, as dig), 9 when none did,
2 for a bad argument, 141 when stdout was closed early (`| head`), quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from muxio.cli.main import add_backend_option
from muxio.errors import ConfigError
from muxio.handlers.dns import (
    SERVICE_PORT,
    DnsTimeoutError,
    Reply,
    Resolver,
    ServerAddressError,
)
from muxio.handlers.dns.client import DEFAULT_TIMEOUT, DEFAULT_TRIES
from muxio.loop import Loop
from muxio.transports.network import LoopNetwork

EXIT_NO_REPLY = 9
"""dig's status when no server replied."""
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a tool killed by the closed pipe would report."""
DEFAULT_SERVER = f"localhost:{SERVICE_PORT}"
LOOPBACK = "127.0.0.1"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "resolve", help="query DNS servers and print the answer (a short dig)",
        description="Query DNS servers over UDP (TCP after a truncated reply, or with "
                    "--tcp) and print the response like dig.")
    parser.add_argument("name", help="the name to look up, e.g. example.com")
    parser.add_argument("type", nargs="?", default="A",
                        help="record type (default: A), e.g. AAAA, MX, TXT, SRV, PTR")
    parser.add_argument("--server", action="append", dest="servers", metavar="HOST:PORT",
                        help="server to ask: an IP literal or localhost, with an optional "
                             "port (default port 53; IPv6 as [::1]:5300); repeat to fall "
                             f"back in order. Default: {DEFAULT_SERVER}, where "
                             "'muxio serve dns' listens")
    parser.add_argument("--class", dest="rdclass", default="IN", help="record class (IN)")
    parser.add_argument("--tcp", action="store_true", help="ask over TCP from the start")
    parser.add_argument("--norec", action="store_true", help="clear the RD flag")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"wait per attempt (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--tries", type=int, default=DEFAULT_TRIES,
                        help=f"rounds over the servers (default: {DEFAULT_TRIES})")
    parser.add_argument("--short", action="store_true",
                        help="print only the answer records' data, as dig +short")
    add_backend_option(parser)
    parser.set_defaults(func=run)


def _query(resolver: Resolver, args: argparse.Namespace) -> dns.message.QueryMessage:
    try:
        return resolver.make_query(args.name, args.type.upper(), args.rdclass.upper(),
                                   recursion_desired=not args.norec)
    except dns.rdatatype.UnknownRdatatype:
        raise ConfigError(f"unknown record type {args.type!r}: use a name such as A, AAAA, "
                          f"MX, TXT or TYPE<number>") from None
    except dns.rdataclass.UnknownRdataclass:
        raise ConfigError(f"unknown record class {args.rdclass!r}: use IN, CH or "
                          f"CLASS<number>") from None
    except dns.exception.DNSException as exc:
        raise ConfigError(f"invalid name {args.name!r}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.tries < 1:
        raise ConfigError(f"--tries must be >= 1, got {args.tries}")
    with Loop(cli_backend=args.backend) as loop:
        try:
            resolver = Resolver(LoopNetwork(loop), servers(args.servers or [DEFAULT_SERVER]),
                                timeout=args.timeout, tries=args.tries)
        except ServerAddressError as exc:
            raise ConfigError(str(exc)) from exc
        try:
            query = _query(resolver, args)
            started = time.perf_counter()
            future = resolver.ask(query, tcp=args.tcp)
            try:
                reply = loop.run_until_complete(future)
            except DnsTimeoutError as exc:
                print(f";; {exc}", file=sys.stderr)
                if not all(_has_port(server) for server in args.servers or ["x:1"]):
                    print(";; (a --server without a port is asked on port 53; `muxio serve "
                          "dns` listens on 5300: --server HOST:5300)", file=sys.stderr)
                return EXIT_NO_REPLY
            elapsed = time.perf_counter() - started
        finally:
            resolver.close()
            for _ in range(3):
                loop.run_once(0)  # let closed endpoints release their sockets
    try:
        if args.short:
            print_short(reply.message, sys.stdout)
        else:
            print_reply(reply, elapsed, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): not an error worth a traceback. Point stdout at
        # /dev/null so that the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return 0


def _has_port(server: str) -> bool:
    """Whether a --server value names its port ('host:53', '[::1]:53'; not '::1')."""
    if server.startswith("["):
        return "]:" in server
    return server.count(":") == 1


def servers(given: list[str]) -> list[str]:
    """The --server values, with `localhost[:PORT]` as 127.0.0.1 (RFC 6761: always the
    loopback, whatever /etc/hosts says). Not ::1 as well: an unconnected UDP socket hears
    no ICMP refusal, so each extra server that is not there costs a full timeout."""
    expanded: list[str] = []
    for text in given:
        name, colon, port = text.strip().partition(":")
        expanded.append(f"{LOOPBACK}{colon}{port}" if name.lower() == "localhost" else text)
    return expanded


def print_short(message: dns.message.Message, out: TextIO) -> None:
    for rrset in message.answer:
        for rdata in rrset:
            print(rdata.to_text(), file=out)


def _section(title: str, rrsets: list[dns.rrset.RRset], out: TextIO) -> None:
    if not rrsets:
        return
    print(f"\n;; {title} SECTION:", file=out)
    for rrset in rrsets:
        for line in rrset.to_text().splitlines():
            name, ttl, rdclass, rdtype, data = (line.split(None, 4) + [""] * 5)[:5]
            print(f"{name:<24}{ttl:<8}{rdclass:<4}{rdtype:<8}{data}".rstrip(), file=out)


def print_reply(reply: Reply, elapsed: float, out: TextIO) -> None:
    """The response as dig prints it, a little shorter."""
    message = reply.message
    flags = dns.flags.to_text(message.flags).lower()
    records = sum(len(rrset) for rrset in message.additional)
    additional = records + (1 if message.opt is not None else 0)  # dig counts the OPT
    print(f";; ->>HEADER<<- opcode: {dns.opcode.to_text(message.opcode())}, "
          f"status: {dns.rcode.to_text(message.rcode())}, id: {message.id}", file=out)
    print(f";; flags: {flags}; QUERY: {len(message.question)}, ANSWER: "
          f"{sum(len(rrset) for rrset in message.answer)}, AUTHORITY: "
          f"{sum(len(rrset) for rrset in message.authority)}, ADDITIONAL: {additional}",
          file=out)
    if message.opt is not None:
        edns_flags = dns.flags.edns_to_text(message.ednsflags).lower()
        print(f";; EDNS: version: {message.edns}, flags: {edns_flags}; udp: {message.payload}",
              file=out)
    if message.question:
        print("\n;; QUESTION SECTION:", file=out)
        for question in message.question:
            print(f";{question.name!s:<23}{'':<8}"
                  f"{dns.rdataclass.to_text(question.rdclass):<4}"
                  f"{dns.rdatatype.to_text(question.rdtype)}", file=out)
    _section("ANSWER", message.answer, out)
    _section("AUTHORITY", message.authority, out)
    _section("ADDITIONAL", message.additional, out)
    print(f"\n;; Query time: {elapsed * 1000:.0f} msec", file=out)
    print(f";; SERVER: {reply.server.host}#{reply.server.port} ({reply.transport.upper()})",
          file=out)
