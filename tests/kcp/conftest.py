"""KCP test setup: the C reference peer (PyPI ``siokcp==0.0.5``) as a fixture.

Without siokcp the differential and interop tests skip with the command to install it;
under ``CI=true`` they fail instead, so CI can never silently lose them.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

SIOKCP_PIN = "siokcp==0.0.5"


def require_siokcp() -> ModuleType:
    """The imported ``siokcp`` module; skip (or fail when CI=true) if it is missing."""
    try:
        siokcp = importlib.import_module("siokcp")
    except ImportError:
        message = f"the C reference peer is not installed: pip install {SIOKCP_PIN}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: a missing reference is a failure)", pytrace=False)
        pytest.skip(message)
    version = getattr(siokcp, "__version__", "?")
    if version != SIOKCP_PIN.split("==")[1]:
        message = f"siokcp {version} found, the lockstep tests pin: pip install {SIOKCP_PIN}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return siokcp


@pytest.fixture(scope="session")
def siokcp_module() -> ModuleType:
    """The C reference module (session scope, so hypothesis tests can use it)."""
    return require_siokcp()
