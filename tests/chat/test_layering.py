"""The chat handler package sees only the handler API: muxio.protocols and the stdlib."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "muxio" / "handlers" / "chat"
ALLOWED_MUXIO = ("muxio.protocols", "muxio.handlers.chat")


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


def test_chat_imports_only_the_handler_api_and_the_stdlib() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 8, files
    offenders = []
    for path in files:
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "muxio":
                ok = any(name == allowed or name.startswith(allowed + ".")
                         for allowed in ALLOWED_MUXIO)
            else:
                ok = top in sys.stdlib_module_names
            if not ok:
                offenders.append(f"{path.name} imports {name}")
    assert not offenders, "muxio/handlers/chat must not import:\n" + "\n".join(offenders)


def test_the_core_touches_no_sockets_or_clocks() -> None:
    """The sans-I/O files import neither socket, select, time nor the loop: only the
    server object reads the host name and wall clock (injectable), and timers come from
    the Scheduler."""
    for name in ("messages.py", "framing.py", "session.py", "errors.py", "heartbeat.py"):
        imported = {module.split(".")[0] for module in imported_modules(PACKAGE / name)}
        assert not imported & {"socket", "select", "selectors", "time", "asyncio"}, name
