"""SSL contexts for muxio's TLS layer, built from PEM files with errors that name the file.

    server = server_context("cert.pem", "key.pem", alpn=["http/1.1"])
    server = server_context("cert.pem", "key.pem", client_ca="clients-ca.pem")  # mTLS
    client = client_context(cafile="ca.pem")            # verify against this CA only
    client = client_context()                           # the system's trusted CAs
    client = client_context(insecure=True)              # no verification (tests, labs)

Both refuse renegotiation (`OP_NO_RENEGOTIATION`) and anything older than TLS 1.2.
A server context records the name a client asked for (SNI), so that `get_extra_info(
'server_name')` on a server-side transport returns it; recording it also makes OpenSSL
acknowledge the SNI extension, which `openssl s_client -tlsextdebug` shows.

The TLS layer works with any `ssl.SSLContext`; these builders only add the checks a
command line needs (a missing file is one clear line, not an OpenSSL error stack).
"""

from __future__ import annotations

import os
import ssl
import weakref
from collections.abc import Sequence

from muxio.errors import TlsConfigError

_SERVER_NAMES: weakref.WeakKeyDictionary[ssl.SSLObject, str] = weakref.WeakKeyDictionary()
"""SNI asked for by each server-side session (weak: gone with the session)."""


def check_file(path: str, what: str) -> None:
    """Raise TlsConfigError naming `what` and `path` unless `path` is a readable file."""
    if not os.path.exists(path):
        raise TlsConfigError(f"{what} {path}: no such file; give the path of a PEM file")
    if os.path.isdir(path):
        raise TlsConfigError(f"{what} {path}: is a directory; give the path of a PEM file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TlsConfigError(f"{what} {path}: cannot be read ({exc.strerror}); check its "
                             f"permissions") from None


def server_name(sslobj: ssl.SSLObject) -> str | None:
    """The SNI a client sent to a server context built here (None if none)."""
    return _SERVER_NAMES.get(sslobj)


def _record_server_name(sslobj: ssl.SSLObject, name: str | None,
                        context: ssl.SSLContext) -> None:
    if name is not None:
        _SERVER_NAMES[sslobj] = name


_HARDENED: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
"""Contexts already hardened: reading and setting SSLContext options goes through enum
conversions that cost more than the rest of a session's setup, so it is done once."""


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """Refuse renegotiation and protocol versions older than TLS 1.2 (in place)."""
    if context not in _HARDENED:
        context.options |= ssl.OP_NO_RENEGOTIATION
        context.minimum_version = max(context.minimum_version, ssl.TLSVersion.TLSv1_2)
        _HARDENED.add(context)
    return context


def _load_chain(context: ssl.SSLContext, certfile: str, keyfile: str | None,
                cert_what: str, key_what: str) -> None:
    check_file(certfile, cert_what)
    if keyfile is not None:
        check_file(keyfile, key_what)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        files = certfile if keyfile is None else f"{certfile} and {key_what} {keyfile}"
        raise TlsConfigError(f"{cert_what} {files}: not a PEM certificate chain with its "
                             f"matching private key ({_reason(exc)})") from None


def _load_ca(context: ssl.SSLContext, cafile: str, what: str) -> None:
    check_file(cafile, what)
    try:
        context.load_verify_locations(cafile=cafile)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"{what} {cafile}: no PEM CA certificate in it "
                             f"({_reason(exc)})") from None


def _reason(exc: ssl.SSLError) -> str:
    if exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return "the file is not in PEM format"


def server_context(certfile: str, keyfile: str | None = None, *,
                   client_ca: str | None = None, alpn: Sequence[str] = (),
                   labels: dict[str, str] | None = None) -> ssl.SSLContext:
    """A server context with its certificate chain (and key, if not in `certfile`).

    `client_ca`: require every client to present a certificate signed by this CA.
    `alpn`: protocols offered in ALPN, in order of preference (e.g. ["http/1.1"]).
    `labels` renames the files in error messages (the CLI passes its flag names:
    {"cert": "--tls-cert", "key": "--tls-key", "ca": "--tls-ca"}).
    """
    names = {"cert": "certificate file", "key": "private key file",
             "ca": "client CA file", **(labels or {})}
    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_chain(context, certfile, keyfile, names["cert"], names["key"])
    if client_ca is not None:
        _load_ca(context, client_ca, names["ca"])
        context.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        context.set_alpn_protocols(list(alpn))
    context.sni_callback = _record_server_name
    return context


def client_context(*, cafile: str | None = None, insecure: bool = False,
                   certfile: str | None = None, keyfile: str | None = None,
                   alpn: Sequence[str] = (),
                   labels: dict[str, str] | None = None) -> ssl.SSLContext:
    """A client context that verifies the server (against `cafile`, or the system's CAs).

    `insecure`: no verification at all (certificate and host name), for labs and tests.
    `certfile`/`keyfile`: a client certificate, for servers that ask for one.
    """
    names = {"cert": "client certificate file", "key": "client key file",
             "ca": "CA file", **(labels or {})}
    if insecure and cafile is not None:
        raise TlsConfigError(f"{names['ca']} and insecure mode exclude each other: verify "
                             f"against the CA, or do not verify at all")
    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cafile is not None:
        _load_ca(context, cafile, names["ca"])
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if certfile is not None:
        _load_chain(context, certfile, keyfile, names["cert"], names["key"])
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context
