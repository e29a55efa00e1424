"""The chat server's bus: what lets several chat servers (processes, machines) act as one.

Theory of operation
-------------------
A `ChatServer` alone keeps its client table in memory. Given a bus, it also:

- asks the bus for each new client's id (`register`), so ids are unique across servers
  and never reused, and tells it when a client leaves (`unregister`);
- forwards a SEND whose recipient is not one of its own clients through the bus
  (`forward`), answering SEND_OK once the recipient's server has the message;
- answers LIST from the bus (`list`): every client of every live server;
- hears from the bus (`BusHost`) the messages for its clients and the JOINED / LEFT of the
  other servers' clients.

A bus may be down (its store unreachable): then `up` is False, the server refuses new
logins with a clear ERROR, still forwards between its own clients, answers LIST with its
own clients, and `register` / `forward` / `list` report the failure to their callback.
Every callback runs later, from the scheduler, never inside the call that asked for it.

The bus is an interface, like `Scheduler`: the host builds one (`muxio serve chat --bus
redis://...` makes a `muxio.handlers.redis.chat_bus.RedisChatBus` over muxio's TCP) and
hands it to the server, so that this package never opens a connection itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol as TypingProtocol

from muxio.handlers.chat.errors import ErrorCode
from muxio.handlers.chat.messages import ClientEntry

RegisterCallback = Callable[[int | None, str], object]
"""`(client_id, "")` once registered, or `(None, why)` when the bus cannot take it."""
ForwardCallback = Callable[[ErrorCode | None, str], object]
"""`(None, "")` once the recipient's server has the message, or `(code, description)`."""
ListCallback = Callable[[Sequence[ClientEntry] | None, str], object]
"""`(entries in join order, "")`, or `(None, why)` when the bus cannot answer."""


class BusHost(TypingProtocol):
    """What the bus calls on the chat server it serves."""

    def bus_deliver(self, client_id: int, frame: bytes) -> bool:
        """A MESSAGE frame for one of this server's clients; False if it is not here."""
        ...

    def bus_joined(self, entry: ClientEntry) -> None:
        """A client of another server joined."""
        ...

    def bus_left(self, client_id: int, reason: int) -> None:
        """A client of another server left (or its server died: reason TIMEOUT)."""
        ...

    def bus_local_clients(self) -> list[ClientEntry]:
        """This server's clients now, to register again after the bus was down."""
        ...

    def bus_state_changed(self, up: bool, reason: str) -> None:
        """The bus went up or down (logged; new logins depend on it)."""
        ...


class ChatBus(TypingProtocol):
    """A shared client directory and message switch between chat servers."""

    @property
    def up(self) -> bool:
        """Whether new clients can register now."""
        ...

    @property
    def description(self) -> str:
        """Where it is, for messages ('Redis at 10.0.0.5:6379')."""
        ...

    def start(self, host: BusHost) -> None:
        """Connect and serve `host` (once)."""
        ...

    def register(self, address: str, port: int, done: RegisterCallback) -> None: ...

    def unregister(self, client_id: int, reason: int) -> None: ...

    def forward(self, to: int, frame: bytes, done: ForwardCallback) -> None: ...

    def list(self, done: ListCallback) -> None: ...

    def close(self) -> None:
        """Leave: this server's clients are removed from the directory (LEFT to the others),
        the connections close."""
        ...
