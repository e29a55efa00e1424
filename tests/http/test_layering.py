"""The HTTP package sees only the handler API: muxio.protocols, the stdlib and httptools."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "muxio" / "handlers" / "http"
ALLOWED_MUXIO = ("muxio.protocols", "muxio.handlers.http")
ALLOWED_THIRD_PARTY = {"httptools"}


def imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports"
            assert node.module is not None
            names.append(node.module)
    return names


def test_http_imports_only_the_handler_api_stdlib_and_httptools() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 5, files
    offenders = []
    for path in files:
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "muxio":
                ok = any(name == allowed or name.startswith(allowed + ".")
                         for allowed in ALLOWED_MUXIO)
            else:
                ok = top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY
            if not ok:
                offenders.append(f"{path.name} imports {name}")
    assert not offenders, "muxio/handlers/http must not import:\n" + "\n".join(offenders)
