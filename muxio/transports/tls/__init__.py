"""TLS as a layer over any muxio stream transport (TCP, KCP, in-memory): the handler gets
the same Transport API with or without it.

    from muxio.transports import kcp, tls
    context = tls.server_context("cert.pem", "key.pem", alpn=["http/1.1"])
    server = tls.serve(factory, "0.0.0.0", 8443, loop=loop, context=context)
    server = tls.serve(factory, "0.0.0.0", 8443, loop=loop, context=context,
                       over=kcp.transport.serve)

See layer.py for the theory of operation, docs/tls.md for the user's guide.
"""

from muxio.transports.tls.context import check_file, client_context, harden, server_context
from muxio.transports.tls.endpoints import TlsServer, connect, serve
from muxio.transports.tls.layer import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    TlsTransport,
    describe_ssl_error,
)

__all__ = ["DEFAULT_CLOSE_TIMEOUT", "DEFAULT_HANDSHAKE_TIMEOUT", "TlsServer", "TlsTransport",
           "check_file", "client_context", "connect", "describe_ssl_error", "harden", "serve",
           "server_context"]
