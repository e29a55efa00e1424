"""The TLS flags of `muxio serve echo|http|chat` and `muxio chat`, in one place.

Server:  --tls-cert FILE [--tls-key FILE] [--tls-ca FILE] [--tls-handshake-timeout S]
Client:  --tls [--tls-ca FILE | --insecure] [--tls-cert FILE --tls-key FILE]

A missing or unreadable file is a one-line `muxio: error:` naming the flag and the file
(exit 2), raised before anything listens or connects.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Sequence

from muxio.errors import ConfigError
from muxio.transports.tls import DEFAULT_HANDSHAKE_TIMEOUT, client_context, server_context

SERVER_LABELS = {"cert": "--tls-cert", "key": "--tls-key", "ca": "--tls-ca"}
CLIENT_LABELS = {"cert": "--tls-cert", "key": "--tls-key", "ca": "--tls-ca"}


def add_server_arguments(parser: argparse.ArgumentParser, alpn: Sequence[str] = ()) -> None:
    """--tls-cert/--tls-key/--tls-ca; `alpn` is what the service offers in ALPN."""
    group = parser.add_argument_group("TLS (serve over TLS when --tls-cert is given)")
    group.add_argument("--tls-cert", metavar="FILE", default=None,
                       help="PEM certificate chain (may hold the private key too)")
    group.add_argument("--tls-key", metavar="FILE", default=None,
                       help="PEM private key, if not in --tls-cert")
    group.add_argument("--tls-ca", metavar="FILE", default=None,
                       help="require client certificates signed by this CA (PEM)")
    group.add_argument("--tls-handshake-timeout", type=float, metavar="S",
                       default=DEFAULT_HANDSHAKE_TIMEOUT,
                       help="close a client that has not finished its handshake after S "
                            f"seconds (default: {DEFAULT_HANDSHAKE_TIMEOUT:g})")
    parser.set_defaults(tls_alpn=list(alpn))


def server_context_from(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's SSL context, or None without --tls-cert."""
    cert = getattr(args, "tls_cert", None)
    if cert is None:
        for flag in ("tls_key", "tls_ca"):
            if getattr(args, flag, None) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} needs --tls-cert (the "
                                  f"server's certificate)")
        return None
    if not args.tls_handshake_timeout > 0:
        raise ConfigError(f"--tls-handshake-timeout must be > 0 seconds, got "
                          f"{args.tls_handshake_timeout}")
    return server_context(cert, args.tls_key, client_ca=args.tls_ca,
                          alpn=getattr(args, "tls_alpn", ()), labels=SERVER_LABELS)


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS")
    group.add_argument("--tls", action="store_true",
                       help="connect over TLS (verifying the server against the system's "
                            "CAs, or --tls-ca)")
    verify = group.add_mutually_exclusive_group()
    verify.add_argument("--tls-ca", metavar="FILE", default=None,
                        help="trust only this CA (PEM) for the server's certificate")
    verify.add_argument("--insecure", action="store_true",
                        help="do not verify the server's certificate (labs and tests only)")
    group.add_argument("--tls-cert", metavar="FILE", default=None,
                       help="client certificate (PEM), for servers that ask for one")
    group.add_argument("--tls-key", metavar="FILE", default=None,
                       help="its private key, if not in --tls-cert")


def client_context_from(args: argparse.Namespace,
                        alpn: Sequence[str] = ()) -> ssl.SSLContext | None:
    """The client's SSL context, or None without --tls."""
    if not args.tls:
        for flag in ("tls_ca", "tls_cert", "tls_key", "insecure"):
            if getattr(args, flag, None):
                raise ConfigError(f"--{flag.replace('_', '-')} needs --tls")
        return None
    if args.tls_key is not None and args.tls_cert is None:
        raise ConfigError("--tls-key needs --tls-cert (the client certificate)")
    return client_context(cafile=args.tls_ca, insecure=args.insecure, certfile=args.tls_cert,
                          keyfile=args.tls_key, alpn=alpn, labels=CLIENT_LABELS)
