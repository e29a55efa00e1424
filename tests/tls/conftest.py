"""The throwaway PKI every TLS test module shares (one per test worker)."""

from __future__ import annotations

import pytest

from tests.tls.harness import Pki, make_pki
from tests.tools import require_module


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_module("trustme", "trustme")
    return make_pki(tmp_path_factory.mktemp("pki"))
