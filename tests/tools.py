"""External programs the tests use: present, or skipped with the package to install.

Under CI (`CI=true`) a missing program is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(program: str, package: str) -> str:
    """The path of `program`; skip (or fail under CI) naming the Debian package if absent."""
    path = shutil.which(program)
    if path is not None:
        return path
    message = f"{program} is not installed: apt-get install {package}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing tool is a failure)", pytrace=False)
    pytest.skip(message)


def require_module(module: str, pip_name: str) -> None:
    """Import check for an optional Python package; same skip/fail rule as require_tool."""
    try:
        __import__(module)
    except ImportError:
        message = f"Python package {module} is not installed: pip install {pip_name}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: a missing tool is a failure)", pytrace=False)
        pytest.skip(message)
