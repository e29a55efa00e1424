"""The C reference is optional locally (skip, naming the pip command) but required in CI."""

from __future__ import annotations

import sys

import pytest

from tests.kcp.conftest import SIOKCP_PIN, require_siokcp


def test_missing_reference_skips_with_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "siokcp", None)  # makes `import siokcp` fail
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"pip install {SIOKCP_PIN}"):
        require_siokcp()


def test_missing_reference_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "siokcp", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"pip install {SIOKCP_PIN}"):
        require_siokcp()


def test_pinned_reference_is_returned(siokcp_module: object) -> None:
    assert getattr(siokcp_module, "__version__", None) == "0.0.5"
    assert hasattr(siokcp_module, "KCPConnection")
