"""The DNS resolver, used from code: ask a server, get dnspython messages back.

    muxio serve dns --zone examples/example.zone            # in one shell (port 5300)
    python examples/resolve.py www.example.test A AAAA MX   # in another

The questions go out at once, over UDP (TCP when a reply is truncated), each answer
arrives as a Future; the loop runs until all are done. The resolver retries and falls
back over the servers given; `DnsTimeoutError` means none answered.
"""

from __future__ import annotations

import argparse
import sys

import dns.message

import muxio
from muxio.handlers.dns import DnsTimeoutError, Resolver
from muxio.transports.network import LoopNetwork


def main() -> int:
    parser = argparse.ArgumentParser(description="ask a DNS server several questions")
    parser.add_argument("name", help="e.g. www.example.test")
    parser.add_argument("types", nargs="+", help="record types, e.g. A AAAA MX")
    parser.add_argument("--server", default="127.0.0.1:5300", help="IP[:PORT]")
    args = parser.parse_args()
    with muxio.Loop() as loop:
        resolver = Resolver(LoopNetwork(loop), [args.server], timeout=1.0, tries=2)
        questions = {rdtype: resolver.query(args.name, rdtype) for rdtype in args.types}
        loop.run_until(lambda: all(future.done() for future in questions.values()),
                       timeout=30)
        resolver.close()
        loop.run_once(0)  # let the resolver's sockets close
    status = 0
    for rdtype, future in questions.items():
        try:
            answer: dns.message.Message = future.result()
        except DnsTimeoutError as exc:
            print(f"{rdtype}: {exc}", file=sys.stderr)
            status = 1
            continue
        records = [rdata.to_text() for rrset in answer.answer for rdata in rrset]
        print(f"{rdtype}: {', '.join(records) or 'no records'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
