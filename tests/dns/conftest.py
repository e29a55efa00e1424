"""Fixtures of the DNS tests: our server once per backend per module, nsd once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from muxio.testing.matrix import matrix_backends
from tests.dns.helpers import Nsd, ServedDns, running_nsd, serving


@pytest.fixture(scope="module", params=matrix_backends())
def served(request: pytest.FixtureRequest) -> Iterator[ServedDns]:
    """Our server on each backend of the matrix (one per module, not per test)."""
    with serving(request.param) as dns_server:
        yield dns_server


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    """nsd serving the same zone files, for differential tests."""
    with running_nsd(tmp_path_factory.mktemp("nsd")) as process:
        yield process
