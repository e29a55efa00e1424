"""Floor 4: protocol handlers, written once against `muxio.protocols` only.

A handler module imports nothing of pollers, the loop or concrete transports (a test
checks this), so the same handler runs on every backend and transport, and on asyncio,
uvloop or Twisted through `adapters/`.

What a host needs
-----------------
Each handler package listed in `HANDLERS` exports the same small shape, which every host
uses: `muxio serve NAME` (muxio's loop, any transport), `python -m adapters --service NAME`
(asyncio, uvloop, Twisted) and your own program:

    DESCRIPTION: str                                   one line, for --help
    ALPN: tuple[str, ...]                              its protocol ids, for a TLS host
    add_arguments(parser: argparse.ArgumentParser)     the handler's own options
    config_from(args: argparse.Namespace) -> Config    options -> its config (ValueError
                                                       naming the flag when invalid)
    protocol_factory(scheduler: Scheduler, config: Config | None = None) -> ProtocolFactory

`scheduler` is anything with `time`, `call_soon` and `call_later` (a muxio `Loop`, an asyncio
loop, `adapters.twisted_host.TwistedScheduler`); `config` None means the defaults. Options
about where and how to listen (host, port, transport, backend) belong to the host, never
to the handler.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any
from typing import Protocol as TypingProtocol

from muxio.protocols import ProtocolFactory, Scheduler

HANDLERS: dict[str, str] = {
    "echo": "muxio.handlers.echo",
    "http": "muxio.handlers.http",
    "chat": "muxio.handlers.chat",
    "dns": "muxio.handlers.dns",
}
"""Handler name -> the module that exports the hosting shape above."""


class HostedHandler(TypingProtocol):
    """The hosting shape of a handler package (see the module docstring)."""

    DESCRIPTION: str
    ALPN: tuple[str, ...]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def config_from(self, args: argparse.Namespace) -> Any: ...

    def protocol_factory(self, scheduler: Scheduler, config: Any = None) -> ProtocolFactory: ...


def hosted_handler(name: str) -> HostedHandler:
    """The handler package called `name` (a key of HANDLERS), imported."""
    try:
        module_name = HANDLERS[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a handler; available: "
                         f"{', '.join(HANDLERS)}") from None
    handler: HostedHandler = importlib.import_module(module_name)
    return handler
