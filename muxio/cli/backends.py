"""`muxio backends` (what is available here and why not) and `muxio config` (who decided)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table

from muxio.cli.main import add_backend_option
from muxio.config import ENV_BACKEND, find_config_file, resolve_backend
from muxio.pollers.registry import default_registry


def register(subparsers: Any) -> None:
    backends = subparsers.add_parser(
        "backends", help="list poller backends: available here or why not")
    backends.add_argument("--json", action="store_true", help="machine-readable output")
    backends.add_argument("--explain", action="store_true",
                          help="also show which backend the config rules choose, and why")
    add_backend_option(backends)
    backends.set_defaults(func=run_backends)

    config = subparsers.add_parser(
        "config", help="show which source (argument, env, file, auto) decides the backend")
    add_backend_option(config)
    config.set_defaults(func=run_config)


def _rows() -> list[dict[str, Any]]:
    rows = []
    for spec in default_registry().ordered():
        reason = spec.unavailable_reason()
        caps = spec.capabilities
        rows.append({
            "name": spec.name, "available": reason is None, "reason": reason or "",
            "edge_triggered": caps.edge_triggered, "constant_time": caps.constant_time,
            "fd_limit": caps.max_fd, "source": spec.source, "description": spec.description})
    return rows


def run_backends(args: argparse.Namespace) -> int:
    rows = _rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console = Console(width=max(Console().width, 120))
    table = Table(title="muxio poller backends (in order of preference)")
    for column in ("name", "available", "edge-triggered", "O(1)", "fd limit", "source",
                   "reason if unavailable / description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"], "yes" if row["available"] else "no",
            "yes" if row["edge_triggered"] else "no", "yes" if row["constant_time"] else "no",
            "none" if row["fd_limit"] is None else str(row["fd_limit"]), row["source"],
            row["reason"] or row["description"])
    console.print(table)
    if args.explain:
        _explain(args.backend)
    return 0


def _explain(cli_backend: str | None) -> None:
    choice = resolve_backend(cli=cli_backend, registry=default_registry())
    config = find_config_file()
    print("API argument:  (none from the command line)")
    print(f"--backend:     {cli_backend or '(not given)'}")
    print(f"{ENV_BACKEND}: {os.environ.get(ENV_BACKEND) or '(not set)'}")
    print("config file:   " + (
        f"{config.label}: backend = {config.settings.get('backend', '(not set)')!r}"
        if config else "(none found from here upward)"))
    note = " (auto: the first available backend in 'muxio backends')" if (
        choice.requested == "auto") else ""
    print(f"=> backend {choice.name}, decided by {choice.source}{note}")


def run_config(args: argparse.Namespace) -> int:
    _explain(args.backend)
    return 0
