"""The chat servers' shared directory and message switch, in Redis (`RedisChatBus`).

Theory of operation
-------------------
Every chat server started with the same bus (`muxio serve chat --bus redis://HOST:PORT`)
keeps, under the namespace `NS` (default `muxio:chat`):

    NS:next_server        INCR: each server's id (sid), once per process
    NS:next_id            INCR: each client's id, unique across servers, never reused
    NS:clients            hash  client id -> "sid port address"  (the directory)
    NS:members:SID        set   the ids of one server's clients
    NS:alive:SID          "1" with a TTL (`presence_ttl`): the server's presence
    NS:servers            set   the sids that registered

and listens (a second connection, in subscriber mode) on two channels:

    NS:events             "J sid id port address" / "L sid id reason": JOINED / LEFT
    NS:to:SID             4-byte recipient id + a MESSAGE frame, for this server's clients

Each multi-key step is one Lua script (EVALSHA, EVAL when Redis does not know it yet), so
that it is atomic and one round trip: *register* (INCR, the directory entries, JOINED),
*unregister*, *send* (find the recipient's server, check it is alive, PUBLISH to its
channel: SEND_OK means the recipient's server has the message), *list* and *heartbeat*.

Presence: every `presence_ttl / 3` a server renews its alive key and *sweeps*: a server
whose alive key expired (it was killed, or cut off from Redis) has its clients removed from
the directory and LEFT (reason TIMEOUT) published for them, by whichever live server
notices first (the script is atomic, so once). LIST sweeps too, so a dead server's
clients leave the list at most `presence_ttl` after its last heartbeat. A server that
finds its own key expired (cut off longer than the TTL) registers all its clients again.

Redis down: the command connection is lost (or a command is unanswered for
`command_timeout`). The bus is then down: `register` fails at once (the server refuses
new logins with a clear ERROR), `forward` and `list` too (the server goes on forwarding
between its own clients and lists them alone). Both connections reconnect with
exponential backoff; once back, the server *re-registers*: its presence, its current
clients (JOINED for those the others had lost, LEFT for those who left meanwhile), and
the counters raised to at least what it has handed out, in case Redis restarted empty.
Only then is it up again. (Ids stay unique across a Redis restart only if no server that
handed out the highest ids died meanwhile; run Redis with `appendonly yes` to keep the
counters.)
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from muxio.handlers.chat.bus import (
    BusHost,
    ForwardCallback,
    ListCallback,
    RegisterCallback,
)
from muxio.handlers.chat.errors import ErrorCode
from muxio.handlers.chat.messages import MAX_ADDRESS, ClientEntry, MessageType
from muxio.handlers.redis.client import Connector, RedisLimits, RedisLink, Reply
from muxio.handlers.redis.resp import RedisError, encode_command
from muxio.protocols import Cancellable, Scheduler

log = logging.getLogger("muxio.chat.bus")

DEFAULT_PORT = 6379
_U32 = struct.Struct(">I")
_MAX_REGISTER_ARGS = 3 * 100_000

_SWEEP = """
local function sweep(ns)
  for _, s in ipairs(redis.call('SMEMBERS', ns .. ':servers')) do
    if redis.call('EXISTS', ns .. ':alive:' .. s) == 0 then
      local m = ns .. ':members:' .. s
      for _, id in ipairs(redis.call('SMEMBERS', m)) do
        redis.call('HDEL', ns .. ':clients', id)
        redis.call('PUBLISH', ns .. ':events', 'L ' .. s .. ' ' .. id .. ' 2')
      end
      redis.call('DEL', m)
      redis.call('SREM', ns .. ':servers', s)
    end
  end
end
"""

SCRIPTS: dict[str, str] = {
    # ARGV: ns, sid, ttl_ms -> 1, or 0 if our presence had expired (register again)
    "heartbeat": _SWEEP + """
local ns, sid = ARGV[1], ARGV[2]
local kept = redis.call('SET', ns .. ':alive:' .. sid, '1', 'PX', ARGV[3], 'XX')
sweep(ns)
if kept then return 1 end
return 0
""",
    # ARGV: ns, sid, port, address -> the new client id
    "register": """
local ns, sid = ARGV[1], ARGV[2]
local id = redis.call('INCR', ns .. ':next_id')
redis.call('HSET', ns .. ':clients', id, sid .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
redis.call('SADD', ns .. ':members:' .. sid, id)
redis.call('PUBLISH', ns .. ':events',
           'J ' .. sid .. ' ' .. id .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return id
""",
    # ARGV: ns, sid, id, reason
    "unregister": """
local ns, sid = ARGV[1], ARGV[2]
if redis.call('SREM', ns .. ':members:' .. sid, ARGV[3]) == 1 then
  redis.call('HDEL', ns .. ':clients', ARGV[3])
  redis.call('PUBLISH', ns .. ':events', 'L ' .. sid .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
end
return 1
""",
    # ARGV: ns, to, payload -> 1 published, -10 never existed, -12 gone
    "send": """
local ns = ARGV[1]
local v = redis.call('HGET', ns .. ':clients', ARGV[2])
if not v then
  if tonumber(ARGV[2]) <= tonumber(redis.call('GET', ns .. ':next_id') or '0') then
    return -12
  end
  return -10
end
local sid = string.match(v, '^(%d+) ')
if not sid or redis.call('EXISTS', ns .. ':alive:' .. sid) == 0 then return -12 end
if redis.call('PUBLISH', ns .. ':to:' .. sid, ARGV[3]) == 0 then return -12 end
return 1
""",
    # ARGV: ns -> [id, "sid port address", ...] of the live servers' clients
    "list": _SWEEP + """
sweep(ARGV[1])
return redis.call('HGETALL', ARGV[1] .. ':clients')
""",
    # ARGV: ns, sid, ttl_ms, max_id, then (id, port, address) per client -> 1
    "reregister": """
local ns, sid = ARGV[1], ARGV[2]
local m = ns .. ':members:' .. sid
local clients = ns .. ':clients'
local before, now = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', m)) do before[id] = true end
for i = 5, #ARGV, 3 do now[ARGV[i]] = true end
for id in pairs(before) do
  if not now[id] then
    redis.call('HDEL', clients, id)
    redis.call('SREM', m, id)
    redis.call('PUBLISH', ns .. ':events', 'L ' .. sid .. ' ' .. id .. ' 1')
  end
end
for i = 5, #ARGV, 3 do
  local id, entry = ARGV[i], ARGV[i + 1] .. ' ' .. ARGV[i + 2]
  redis.call('HSET', clients, id, sid .. ' ' .. entry)
  if not before[id] then
    redis.call('SADD', m, id)
    redis.call('PUBLISH', ns .. ':events', 'J ' .. sid .. ' ' .. id .. ' ' .. entry)
  end
end
for _, counter in ipairs({{':next_id', ARGV[4]}, {':next_server', sid}}) do
  local value = tonumber(redis.call('GET', ns .. counter[1]) or '0')
  if value < tonumber(counter[2]) then redis.call('SET', ns .. counter[1], counter[2]) end
end
redis.call('SET', ns .. ':alive:' .. sid, '1', 'PX', ARGV[3])
redis.call('SADD', ns .. ':servers', sid)
return 1
""",
    # ARGV: ns, sid: this server leaves (clean shutdown)
    "deregister": """
local ns, sid = ARGV[1], ARGV[2]
local m = ns .. ':members:' .. sid
for _, id in ipairs(redis.call('SMEMBERS', m)) do
  redis.call('HDEL', ns .. ':clients', id)
  redis.call('PUBLISH', ns .. ':events', 'L ' .. sid .. ' ' .. id .. ' 1')
end
redis.call('DEL', m, ns .. ':alive:' .. sid)
redis.call('SREM', ns .. ':servers', sid)
return 1
""",
}
_SHAS = {name: hashlib.sha1(body.encode()).hexdigest() for name, body in SCRIPTS.items()}


class BusUrlError(ValueError):
    """A --bus value that is not redis://HOST[:PORT][/DB]."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int = DEFAULT_PORT
    db: int = 0

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def parse_bus_url(url: str) -> RedisAddress:
    """`redis://HOST[:PORT][/DB]` (port 6379, db 0 by default)."""
    hint = "give it as redis://HOST:PORT, e.g. --bus redis://127.0.0.1:6379"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BusUrlError(f"--bus {url!r}: {exc}; {hint}") from None
    if parts.scheme != "redis":
        raise BusUrlError(f"--bus {url!r}: only redis:// is supported; {hint}")
    if not parts.hostname:
        raise BusUrlError(f"--bus {url!r} names no host; {hint}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BusUrlError(f"--bus {url!r}: credentials and options are not supported; "
                          f"{hint}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise BusUrlError(f"--bus {url!r}: the database must be a number (/0); {hint}")
    return RedisAddress(parts.hostname, DEFAULT_PORT if port is None else port,
                        int(path) if path else 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisBusConfig:
    """Where the bus is and how it keeps presence (times in seconds)."""

    address: RedisAddress
    namespace: str = "muxio:chat"
    """Key and channel prefix: servers with the same Redis and namespace form one chat."""
    presence_ttl: float = 15.0
    """A server's presence lives this long after its last heartbeat (sent every
    presence_ttl / 3): a killed server's clients leave the list within it."""
    limits: RedisLimits = field(default_factory=RedisLimits)

    def __post_init__(self) -> None:
        if not 0.3 <= self.presence_ttl <= 3600:
            raise ValueError("RedisBusConfig.presence_ttl must be between 0.3 and 3600 s")
        if not self.namespace or " " in self.namespace:
            raise ValueError("RedisBusConfig.namespace must be non-empty, without spaces")


class RedisChatBus:
    """A `muxio.handlers.chat.bus.ChatBus` in Redis (see the module docstring)."""

    def __init__(self, scheduler: Scheduler, connector: Connector,
                 config: RedisBusConfig) -> None:
        self.scheduler = scheduler
        self.config = config
        self.server_id = 0
        self._ns = config.namespace
        name = str(config.address)
        self._commands = RedisLink(scheduler, connector, name=name, limits=config.limits,
                                   on_up=self._commands_up, on_down=self._went_down)
        self._pubsub = RedisLink(scheduler, connector, name=name, limits=config.limits,
                                 on_up=self._subscribe, on_down=self._went_down,
                                 on_message=self._on_message)
        self._host: BusHost | None = None
        self._registered = False
        self._subscribed = False
        self._was_up = False
        self._max_id = 0
        self._heartbeat: Cancellable | None = None
        self._closed = False
        self.stats = {"forwarded_in": 0, "dropped_in": 0, "bad_pushes": 0}
        # SEND is the hot path: its EVALSHA is encoded once but for its last two arguments.
        self._send_head = b"*6\r\n" + encode_command("EVALSHA", _SHAS["send"], 0,
                                                       self._ns)[4:]
        self._channel_events = f"{self._ns}:events".encode()
        self._to_me = b""
        self._to_me_for = -1

    # -- ChatBus -------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return (self._registered and self._subscribed and self._commands.up
                and self._pubsub.up)

    @property
    def description(self) -> str:
        return f"Redis at {self.config.address}"

    def start(self, host: BusHost) -> None:
        if self._host is not None:
            raise RuntimeError("RedisChatBus.start: already started")
        self._host = host
        self._commands.start()
        self._pubsub.start()
        self._heartbeat = self.scheduler.call_later(self._interval(), self._beat)

    def register(self, address: str, port: int, done: RegisterCallback) -> None:
        if not self.up:
            self.scheduler.call_soon(done, None, self._unreachable())
            return

        def registered(reply: Reply) -> None:
            if isinstance(reply, int) and reply > 0 and not isinstance(reply, bool):
                self._max_id = max(self._max_id, reply)
                done(reply, "")
            else:
                done(None, self._failure(reply))

        self._script("register", (self.server_id, port, address), registered)

    def unregister(self, client_id: int, reason: int) -> None:
        if self._commands.up and self.server_id:
            self._script("unregister", (self.server_id, client_id, reason), _ignore)
        # Down: the re-registration after the reconnect removes it (LEFT to the others).

    def forward(self, to: int, frame: bytes, done: ForwardCallback) -> None:
        if not (self._commands.up and self.server_id):
            self.scheduler.call_soon(done, ErrorCode.NOT_DELIVERED,
                                     f"client {to} is not on this server and "
                                     f"{self._unreachable()}")
            return

        payload = _U32.pack(to) + frame

        def sent(reply: Reply) -> None:
            if reply == 1:
                done(None, "")
            elif isinstance(reply, RedisError) and reply.kind == "NOSCRIPT":
                self._commands.command("EVAL", SCRIPTS["send"], 0, self._ns, to, payload,
                                       callback=sent)
            elif reply == -10:
                done(ErrorCode.NO_SUCH_CLIENT, f"there is no client {to}")
            elif reply == -12:
                done(ErrorCode.CLIENT_GONE, f"client {to} has left")
            else:
                done(ErrorCode.NOT_DELIVERED, f"client {to} is on another server and "
                                              f"{self._failure(reply)}")

        digits = b"%d" % to
        self._commands.send_encoded(
            b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n" % (self._send_head, len(digits), digits,
                                                 len(payload), payload), sent)

    def list(self, done: ListCallback) -> None:
        if not self._commands.up:
            self.scheduler.call_soon(done, None, self._unreachable())
            return

        def listed(reply: Reply) -> None:
            if not isinstance(reply, list):
                done(None, self._failure(reply))
                return
            done(self._entries(reply), "")

        self._script("list", (), listed)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if self._commands.up and self.server_id:
            # EVAL, not EVALSHA: no second round trip for NOSCRIPT once the link is closed.
            self._commands.command("EVAL", SCRIPTS["deregister"], 0, self._ns,
                                   self.server_id, callback=_ignore)
        self._registered = self._subscribed = False
        self._commands.close()
        self._pubsub.close()

    # -- connections ---------------------------------------------------------------------

    def _commands_up(self) -> None:
        db = self.config.address.db
        if db:
            self._commands.command("SELECT", db, callback=self._checked("SELECT"))
        if self.server_id:
            self._reregister()
            return

        def numbered(reply: Reply) -> None:
            if isinstance(reply, int) and reply > 0:
                self.server_id = reply
                log.info("chat server %d on the bus (%s)", reply, self.description)
                self._subscribe()
                self._reregister()
            else:
                log.warning("the bus (%s) gave no server id: %s", self.description,
                            self._failure(reply))
                self._commands.drop()

        self._commands.command("INCR", f"{self._ns}:next_server", callback=numbered)

    def _subscribe(self) -> None:
        if not self.server_id or not self._pubsub.up or self._subscribed:
            return

        def subscribed(reply: Reply) -> None:
            if isinstance(reply, list) and reply and reply[0] == b"subscribe":
                if reply[1] == self._channel_to_me():
                    self._subscribed = True
                    self._maybe_up()
            else:
                log.warning("SUBSCRIBE on the bus failed: %s", self._failure(reply))
                self._pubsub.drop()

        # One reply per channel: the second one completes the subscription.
        self._pubsub.command("SUBSCRIBE", f"{self._ns}:events", callback=subscribed)
        self._pubsub.command("SUBSCRIBE", self._channel_to_me(), callback=subscribed)

    def _reregister(self) -> None:
        host = self._host
        if host is None or self._closed:
            return
        entries = host.bus_local_clients()
        args: list[str | int] = [self.server_id, self._ttl_ms(),
                                 max([self._max_id, *(e.client_id for e in entries)])]
        limit = _MAX_REGISTER_ARGS // 3
        if len(entries) > limit:  # one script call's arguments stay bounded
            log.warning("registering only %d of this server's %d clients on the bus",
                        limit, len(entries))
        for entry in entries[:limit]:
            args += [entry.client_id, entry.port, entry.address]

        def done(reply: Reply) -> None:
            if reply == 1:
                self._registered = True
                self._maybe_up()
            else:
                log.warning("registering on the bus failed: %s", self._failure(reply))
                self._commands.drop()

        self._script("reregister", tuple(args), done)

    def _maybe_up(self) -> None:
        if self.up and not self._was_up:
            self._was_up = True
            log.info("the bus (%s) is up: server %d", self.description, self.server_id)
            if self._host is not None:
                self._host.bus_state_changed(True, "")

    def _went_down(self, reason: str) -> None:
        self._registered = self._commands.up and self._registered
        self._subscribed = self._pubsub.up and self._subscribed
        if self._was_up and not self.up:
            self._was_up = False
            if self._host is not None:
                self._host.bus_state_changed(False, reason)

    def _beat(self) -> None:
        self._heartbeat = self.scheduler.call_later(self._interval(), self._beat)
        if not (self._registered and self._commands.up):
            return

        def beaten(reply: Reply) -> None:
            if reply == 0 and self._registered:
                log.warning("this server's presence on the bus expired (cut off longer "
                            "than %g s): registering its clients again",
                            self.config.presence_ttl)
                self._registered = False
                self._reregister()

        self._script("heartbeat", (self.server_id, self._ttl_ms()), beaten)

    # -- what arrives on the channels ----------------------------------------------------

    def _on_message(self, channel: bytes, data: bytes) -> None:
        host = self._host
        if host is None:
            return
        if channel == self._channel_to_me():
            frame = data[4:]
            if (len(data) < 13 or _U32.unpack_from(frame)[0] != len(frame) - 4
                    or frame[4] != MessageType.MESSAGE):
                self._bad_push("a forwarded message that is not a MESSAGE frame")
                return
            if host.bus_deliver(_U32.unpack_from(data)[0], frame):
                self.stats["forwarded_in"] += 1
            else:
                self.stats["dropped_in"] += 1
            return
        if channel != self._channel_events:
            return
        try:
            kind, sid, client, rest = (data.decode() + " ").split(" ", 3)
            if int(sid) == self.server_id:
                return  # our own client: the server told its clients itself
            client_id = int(client)
            if kind == "J":
                port, address = rest.rstrip(" ").split(" ", 1)
                host.bus_joined(ClientEntry(client_id, address[:MAX_ADDRESS],
                                            int(port) & 0xFFFF))
            elif kind == "L":
                host.bus_left(client_id, int(rest) & 0xFF)
            else:
                raise ValueError(kind)
        except (ValueError, UnicodeDecodeError):
            self._bad_push(f"an event that is neither J nor L: {data[:64]!r}")

    def _bad_push(self, what: str) -> None:
        self.stats["bad_pushes"] += 1
        log.warning("the bus sent %s; ignored (another program on namespace %s?)", what,
                    self._ns)

    def _entries(self, reply: Sequence[object]) -> builtins.list[ClientEntry]:
        entries = []
        for index in range(0, len(reply) - 1, 2):
            key, value = reply[index], reply[index + 1]
            try:
                assert isinstance(key, bytes) and isinstance(value, bytes)
                _sid, port, address = value.decode().split(" ", 2)
                entries.append(ClientEntry(int(key), address[:MAX_ADDRESS],
                                           int(port) & 0xFFFF))
            except (AssertionError, ValueError, UnicodeDecodeError):
                self._bad_push(f"a directory entry that is not 'sid port address': "
                               f"{value!r:.64}")
        entries.sort(key=lambda entry: entry.client_id)
        return entries

    # -- helpers -------------------------------------------------------------------------

    def _script(self, name: str, args: tuple[str | int | bytes, ...],
                callback: Callable[[Reply], object]) -> None:
        """EVALSHA the script (keys are derived inside, hence 0 KEYS); EVAL it once
        when Redis does not know it yet (after a restart, SCRIPT FLUSH)."""
        full = (self._ns, *args)

        def answered(reply: Reply) -> None:
            if isinstance(reply, RedisError) and reply.kind == "NOSCRIPT":
                self._commands.command("EVAL", SCRIPTS[name], 0, *full, callback=callback)
            else:
                callback(reply)

        self._commands.command("EVALSHA", _SHAS[name], 0, *full, callback=answered)

    def _checked(self, what: str) -> Callable[[Reply], None]:
        def check(reply: Reply) -> None:
            if isinstance(reply, Exception):
                log.warning("%s on the bus failed: %s", what, reply)
        return check

    def _channel_to_me(self) -> bytes:
        if self._to_me_for != self.server_id:
            self._to_me = f"{self._ns}:to:{self.server_id}".encode()
            self._to_me_for = self.server_id
        return self._to_me

    def _interval(self) -> float:
        return self.config.presence_ttl / 3

    def _ttl_ms(self) -> int:
        return max(1, round(self.config.presence_ttl * 1000))

    def _unreachable(self) -> str:
        return f"the chat directory ({self.description}) is unreachable; try again shortly"

    def _failure(self, reply: Reply) -> str:
        if isinstance(reply, Exception):
            return f"the chat directory ({self.description}) failed: {reply}"
        return f"the chat directory ({self.description}) answered {reply!r:.80}"


def _ignore(reply: Reply) -> None:
    if isinstance(reply, Exception):
        log.debug("bus command failed: %s", reply)


__all__ = ["SCRIPTS", "BusUrlError", "RedisAddress", "RedisBusConfig", "RedisChatBus",
           "parse_bus_url"]
