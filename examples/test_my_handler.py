"""Testing your own handler on every backend x transport, with muxio's pytest plugin.

    cd examples && python -m pytest test_my_handler.py -v

`muxio_matrix` runs each test once per available backend (epoll, poll, select... and any
installed plug-in) and stream transport (tcp, kcp); `stream_pair` connects a client to a
server running your protocol over that transport, on a loop of that backend.
"""

import pytest
from kv_store import KvProtocol

from muxio.testing.pairs import StreamPairFactory

pytestmark = pytest.mark.muxio_matrix


def test_set_get_delete(stream_pair: StreamPairFactory) -> None:
    pair = stream_pair(server=KvProtocol)
    pair.client_transport.write(b"SET colour blue\nGET colour\nDEL colour\nGET colour\n")
    pair.run_until(lambda: pair.client.received.count(b"\n") == 4)
    assert pair.client.received == b"OK\nVALUE blue\nOK\nNOT_FOUND\n"


def test_an_overlong_line_closes_the_connection(stream_pair: StreamPairFactory) -> None:
    pair = stream_pair(server=KvProtocol)
    pair.client_transport.write(b"SET " + b"x" * 10_000)
    pair.run_until(lambda: pair.client.lost)
    assert pair.client.received == b"ERROR line too long\n"
