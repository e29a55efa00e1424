"""`muxio chat [HOST PORT]`: the interactive chat-forward client, on the muxio loop itself.

    muxio chat 127.0.0.1 7008                       # a person at a terminal
    muxio chat 127.0.0.1 7008 --exec time --exec list  # a script: run, print, exit
    printf 'list\\nsend 2 hi\\n' | muxio chat 127.0.0.1 7008
    muxio chat 127.0.0.1 7008 < commands.txt

The protocol logic is `muxio.handlers.chat.ChatClientProtocol`; this module is the terminal:
commands in, lines out.

Theory of operation
-------------------
Everything runs in one `Loop`: the connection, timers, and stdin, which is one more fd
watched with `loop.add_reader`. Commands run one at a time, in order: a command that waits
for an answer (connect, time, name, list, send, ping, close) holds the next one until its
answer, an error, or `--timeout`. Indications (forwarded messages, joins, leaves) are
printed the moment they arrive.

What stdin is decides how it is read:

- a terminal (with stdout a terminal too): cbreak mode and a small line editor, so that a
  message arriving while the user types is printed *above* the prompt and the half-typed
  line is redrawn intact. The terminal is restored on exit, on Ctrl-Z and on errors.
- a pipe, FIFO, socket (or a terminal when stdout is not one): watched with add_reader.
  Each readiness drains what FIONREAD says is there, so no read ever blocks (stdin is
  never set non-blocking: that flag would be shared with the parent shell) and
  edge-triggered backends see every byte.
- a regular file or a device such as /dev/null: *not* watched. Such files are always
  ready: epoll refuses them (UnsupportedFileError) and select/poll would report them ready
  forever. They are read directly, a chunk at a time, whenever the previous command is
  done: a script file behaves the same on every backend. A poller that refuses any other
  kind of stdin gets the same treatment.

Without a terminal there is no prompt, and the exit status says whether every command
succeeded (0) or not (1). EOF on stdin (or Ctrl-D on an empty line) ends the session like
`exit`, after the commands already read have run.
"""

from __future__ import annotations

import argparse
import array
import codecs
import fcntl
import logging
import os
import select
import signal
import ssl
import stat
import sys
import termios
import time
import tty
import unicodedata
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from muxio.cli.main import add_backend_option
from muxio.cli.services.chat import ALPN
from muxio.cli.tls_options import add_client_arguments, client_context_from
from muxio.errors import ConfigError, PollerError, UnsupportedFileError
from muxio.handlers.chat import (
    ERROR_NAMES,
    ChatClientConfig,
    ChatClientHandler,
    ChatClientProtocol,
    ChatError,
    Closing,
    ErrorResponse,
    HelloOk,
    Incoming,
    Joined,
    LeaveReason,
    Left,
    ListOk,
    Message,
    NameOk,
    Pong,
    SendOk,
    TimeOk,
)
from muxio.loop import Loop, TimerHandle
from muxio.transports import tls
from muxio.transports.registry import STREAM_TRANSPORTS, stream_transport

log = logging.getLogger("muxio.chat.cli")

HELP = """\
commands:
  connect HOST PORT   connect to a chat server
  close               say goodbye and disconnect
  time                the server's time
  name                the server's host name
  list                the connected clients (id, address, port; * = you)
  send ID TEXT        forward TEXT to client ID
  ping                round-trip time to the server
  wait SECONDS        do nothing for a while (scripts: let messages arrive)
  help                this list
  exit                disconnect and quit (also: quit, Ctrl-D)"""

GOODBYE_TIMEOUT = 2.0
"""Seconds Ctrl-C waits for the server to acknowledge the goodbye before quitting anyway."""

MAX_LINE = 64 * 1024
"""Longest command line; longer ones are reported and skipped."""
_QUEUE_HIGH = 1000
_QUEUE_LOW = 100
_LEAVE_REASONS = {LeaveReason.BYE: "bye", LeaveReason.CLOSED: "connection closed",
                  LeaveReason.TIMEOUT: "heartbeat timeout",
                  LeaveReason.SLOW_RECEIVER: "too slow a receiver",
                  LeaveReason.PROTOCOL_ERRORS: "protocol errors"}


def printable(text: str) -> str:
    """Remote text made safe for a terminal: control and format characters (escape
    sequences, bidi overrides, newlines) are shown as escapes instead of acting."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or (char.isspace() and char not in "\r\n\t\v\f"
                                  and unicodedata.category(char) == "Zs"):
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def describe_error(error: ErrorResponse) -> str:
    name = ERROR_NAMES.get(error.code, "error")
    return f"{name} ({error.code}): {printable(error.description)}"


def format_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# -- output ------------------------------------------------------------------------------


class Console:
    """Where lines go. Interactive: a prompt and the line being typed stay at the bottom,
    output appears above them. Otherwise: plain lines, errors on stderr."""

    def __init__(self, out: TextIO, err: TextIO, interactive: bool) -> None:
        self.out = out
        self.err = err
        self.interactive = interactive
        self.prompt = "chat> "
        self.line: list[str] = []
        self.broken = False
        """stdout went away (a closed pipe): output is dropped from then on."""

    def _write(self, stream: TextIO, text: str) -> None:
        if self.broken:
            return
        try:
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                stream.flush()
                buffer.write(text.encode(stream.encoding or "utf-8", "backslashreplace"))
                buffer.flush()
            else:
                stream.write(text)
                stream.flush()
        except BrokenPipeError:
            self.broken = True

    def show(self, text: str) -> None:
        """One line of output (printed above the prompt when interactive)."""
        if self.interactive:
            self._write(self.out, f"\r\x1b[K{text}\n{self.prompt}{''.join(self.line)}")
        else:
            self._write(self.out, text + "\n")

    def error(self, text: str) -> None:
        if self.interactive:
            self.show(f"error: {text}")
        else:
            self._write(self.err, f"error: {text}\n")

    def set_prompt(self, prompt: str) -> None:
        if prompt != self.prompt:
            self.prompt = prompt
            self.redraw()

    def redraw(self) -> None:
        if self.interactive:
            self._write(self.out, f"\r\x1b[K{self.prompt}{''.join(self.line)}")

    def echo(self, text: str) -> None:
        if self.interactive:
            self._write(self.out, text)


class LineEditor:
    """Keys (terminal bytes in cbreak mode) -> edited line, submitted on Enter. Printable
    characters, Backspace, Ctrl-U (kill line), Ctrl-W (kill word), Ctrl-L (redraw),
    Ctrl-D (EOF on an empty line); escape sequences (arrows...) are swallowed."""

    def __init__(self, console: Console, submit: Callable[[str], None],
                 eof: Callable[[], None]) -> None:
        self._console = console
        self._submit = submit
        self._eof = eof
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._escape = ""  # "", "esc", "csi", "ss3"

    def feed(self, data: bytes) -> None:
        line = self._console.line
        for char in self._decoder.decode(data):
            if self._escape:
                self._swallow(char)
            elif char in "\r\n":
                text = "".join(line)
                line.clear()
                self._console.echo("\n")
                self._console.echo(self._console.prompt)
                self._submit(text)
            elif char in "\x7f\b":
                if line:
                    line.pop()
                    self._console.redraw()
            elif char == "\x15":
                line.clear()
                self._console.redraw()
            elif char == "\x17":
                while line and line[-1] == " ":
                    line.pop()
                while line and line[-1] != " ":
                    line.pop()
                self._console.redraw()
            elif char == "\x0c":
                self._console.echo("\x1b[H\x1b[2J")
                self._console.redraw()
            elif char == "\x04":
                if not line:
                    self._eof()
            elif char == "\x1b":
                self._escape = "esc"
            elif char.isprintable() and len(line) < MAX_LINE:
                line.append(char)
                self._console.echo(char)

    def _swallow(self, char: str) -> None:
        if self._escape == "esc":
            self._escape = "csi" if char == "[" else "ss3" if char == "O" else ""
        elif self._escape == "ss3" or "\x40" <= char <= "\x7e":
            self._escape = ""


# -- input -------------------------------------------------------------------------------


class LineSplitter:
    """Bytes from a pipe or file -> command lines (UTF-8, '\\n' or '\\r\\n' ends a line)."""

    def __init__(self, on_line: Callable[[str], None],
                 on_too_long: Callable[[int], None]) -> None:
        self._on_line = on_line
        self._on_too_long = on_too_long
        self._partial = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            piece = data[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                self._partial.clear()
                continue
            if len(self._partial) + len(piece) > MAX_LINE:
                self._on_too_long(len(self._partial) + len(piece))
                self._partial.clear()
                continue
            self._partial += piece
            self._emit()
        if not self._discarding:
            self._partial += data[start:]
            if len(self._partial) > MAX_LINE:
                self._on_too_long(len(self._partial))
                self._partial.clear()
                self._discarding = True

    def finish(self) -> None:
        if self._partial and not self._discarding:
            self._emit()
        self._partial.clear()

    def _emit(self) -> None:
        text = self._partial.decode("utf-8", "replace").rstrip("\r")
        self._partial.clear()
        self._on_line(text)


def _available(fd: int) -> int | None:
    """Bytes readable now (FIONREAD), None if the file type cannot tell."""
    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count, True)
    except OSError:
        return None
    return count[0]


def _read_ready(fd: int) -> tuple[bytes, bool]:
    """(what a readable fd holds now, whether it is at EOF), never blocking.

    Drains everything (edge-triggered backends report readiness once), then tells EOF
    from "nothing more yet" by asking select: readable with 0 bytes available is EOF (or a
    hung-up terminal, where read returns b"" too). A spurious report reads nothing."""
    available = _available(fd)
    if available is None:
        data = os.read(fd, 65536)  # readable: one read does not block
        return data, not data
    chunks: list[bytes] = []
    while available > 0:  # a pipe holds at most its buffer size, so this ends
        chunk = os.read(fd, min(available, 65536))
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        available = _available(fd) or 0
    readable, _, _ = select.select([fd], [], [], 0)
    if readable and not _available(fd):
        tail = os.read(fd, 65536)
        if not tail:
            return b"".join(chunks), True
        chunks.append(tail)  # arrived just now
    return b"".join(chunks), False


class StdinKind:
    TERMINAL = "terminal"
    """A terminal, with stdout a terminal too: line editor in cbreak mode."""
    STREAM = "stream"
    """Pipe, FIFO, socket, or a terminal read line by line: watched by the poller."""
    FILE = "file"
    """Regular file or device: always ready, read directly between commands."""
    NONE = "none"
    """Closed stdin, or --exec: no input."""


def stdin_kind(fd: int, stdout_is_tty: bool) -> str:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return StdinKind.NONE
    if os.isatty(fd):
        return StdinKind.TERMINAL if stdout_is_tty else StdinKind.STREAM
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return StdinKind.STREAM
    return StdinKind.FILE


# -- the shell ---------------------------------------------------------------------------


class ChatShell(ChatClientHandler):
    """Commands in, chat requests out, answers and indications printed."""

    def __init__(self, loop: Loop, console: Console, *, transport: str = "tcp",
                 timeout: float = 10.0, interactive: bool = False,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.loop = loop
        self.console = console
        self.transport_name = transport
        self.tls_context = tls_context
        """Connect over TLS with this context (None: plain)."""
        self.timeout = timeout
        self.interactive = interactive
        self.client: ChatClientProtocol | None = None
        self.peer = ""
        self.failures = 0
        self.exit_code: int | None = None
        self._queue: deque[str] = deque()
        self._busy: str | None = None
        self._token = 0
        """Counts commands that wait, so that a late answer cannot finish a later one."""
        self._timer: TimerHandle | None = None
        self._started = 0.0
        self._input_eof = False
        self._pull: Callable[[], None] | None = None
        """Reads more lines from a file stdin (set for StdinKind.FILE)."""
        self._throttle: Callable[[bool], None] | None = None
        """Pauses (True) / resumes (False) a watched stdin when the queue is long."""
        self.stop_on_connect_failure = not interactive
        self._interrupted = False

    # -- queue -----------------------------------------------------------------------------

    def add_line(self, line: str) -> None:
        self._queue.append(line)
        if self._throttle is not None and len(self._queue) > _QUEUE_HIGH:
            self._throttle(True)
        self.loop.call_soon(self.pump)

    def input_ended(self) -> None:
        self._input_eof = True
        self.loop.call_soon(self.pump)

    def pump(self) -> None:
        """Run queued commands until one has to wait; exit when input is done."""
        while self._busy is None and self.exit_code is None:
            if not self._queue:
                if self._pull is not None and not self._input_eof:
                    self._pull()
                    if not self._queue and not self._input_eof:
                        # A chunk without a whole line: go on after the loop had its turn.
                        self.loop.call_soon(self.pump)
                        return
                    continue
                if self._input_eof:
                    self.execute("exit")
                return
            if self._throttle is not None and len(self._queue) < _QUEUE_LOW:
                self._throttle(False)
            self.execute(self._queue.popleft())

    def _wait(self, what: str, timeout: float | None = None) -> Callable[[Message], None]:
        """Mark `what` as waiting for its answer; the callback to give the request."""
        self._busy = what
        self._token += 1
        token = self._token
        self._started = time.monotonic()
        self._timer = self.loop.call_later(timeout or self.timeout, self._timed_out, token)
        return lambda message: self._answer(message, token)

    def interrupt(self, signum: int) -> None:
        """Ctrl-C or SIGTERM: say goodbye to the server (so the others see a BYE, not a
        dropped connection), waiting at most GOODBYE_TIMEOUT, then quit with 128 + signum.
        A second signal, or no greeted connection, quits at once."""
        if self.exit_code is None:
            self.exit_code = 128 + signum  # also stops pump() from running more commands
        client = self.client
        if not self._interrupted and self._busy in ("close", "exit") and client is not None \
                and not client.closed:
            self._interrupted = True  # already saying goodbye: let it finish
            self._busy = "exit"
            return
        if self._interrupted or client is None or client.closed or not client.ready:
            if client is not None and not client.closed:
                client.abort()
            self.loop.stop()
            return
        self._interrupted = True
        if self._timer is not None:
            self._timer.cancel()  # whatever command was waiting is abandoned
            self._timer = None
        self.console.show(f"interrupted: saying goodbye to {self.peer}")
        client.bye(self._wait("exit", min(self.timeout, GOODBYE_TIMEOUT)))

    def _done(self, ok: bool = True) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not ok:
            self.failures += 1
        was = self._busy
        self._busy = None
        if was == "exit":
            self._finish()
            return
        if not ok and was == "connect" and self.stop_on_connect_failure:
            self._finish()
            return
        self.loop.call_soon(self.pump)

    def _fail(self, text: str) -> None:
        self.console.error(text)
        self.failures += 1

    def _timed_out(self, token: int) -> None:
        self._timer = None
        what = self._busy
        if token != self._token or what is None:
            return
        self.console.error(f"{what}: no answer within {self.timeout:g} s")
        if what in ("connect", "close", "exit") and self.client is not None:
            self.client.abort()
            self.client = None
            self._update_prompt()
        self._done(ok=False)

    def _finish(self) -> None:
        if self.exit_code is None:
            self.exit_code = 1 if self.failures and not self.interactive else 0
        self.loop.stop()

    # -- commands --------------------------------------------------------------------------

    def execute(self, line: str) -> None:
        words = line.split(None, 2)
        if not words:
            return
        command, args = words[0].lower(), words[1:]
        handler = self._COMMANDS.get(command)
        if handler is None:
            self._fail(f"unknown command {printable(command)!r}; type 'help'")
            return
        handler(self, args, line)

    def _connected(self) -> ChatClientProtocol | None:
        client = self.client
        if client is None or not client.ready:
            self._fail("not connected: use 'connect HOST PORT'")
            return None
        return client

    def cmd_connect(self, args: list[str], line: str) -> None:
        words = line.split()
        if len(words) != 3:
            self._fail("usage: connect HOST PORT")
            if self.stop_on_connect_failure:
                self._finish()
            return
        host, port_text = words[1], words[2]
        try:
            port = int(port_text)
            if not 0 < port <= 65535:
                raise ValueError
        except ValueError:
            self._fail(f"port must be a number 1-65535, not {printable(port_text)!r}")
            if self.stop_on_connect_failure:
                self._finish()
            return
        if self.client is not None:
            self._fail(f"already connected to {self.peer}: 'close' first")
            return
        client = ChatClientProtocol(self.loop, self, ChatClientConfig())
        self.client = client
        self.peer = format_address(host, port)
        self._wait("connect")
        try:
            spec = stream_transport(self.transport_name)
            if self.tls_context is None:
                future = spec.connect(lambda: client, host, port, loop=self.loop)
            else:
                future = tls.connect(lambda: client, host, port, loop=self.loop,
                                     context=self.tls_context, over=spec.connect,
                                     handshake_timeout=self.timeout)
        except (OSError, PollerError) as exc:
            self._connect_failed(client, exc)
            return

        def connected(done: Any) -> None:
            exc = done.exception()
            if exc is not None:
                self._connect_failed(client, exc)

        future.add_done_callback(connected)

    def _connect_failed(self, client: ChatClientProtocol, exc: BaseException) -> None:
        if self.client is not client:
            return
        self.client = None
        self.console.error(f"cannot connect to {self.peer}: {exc}")
        self._update_prompt()
        if self._busy == "connect":
            self._done(ok=False)

    def cmd_close(self, args: list[str], line: str) -> None:
        client = self._connected()
        if client is None:
            return
        client.bye(self._wait("close"))

    def cmd_time(self, args: list[str], line: str) -> None:
        client = self._connected()
        if client is not None:
            client.time(self._wait("time"))

    def cmd_name(self, args: list[str], line: str) -> None:
        client = self._connected()
        if client is not None:
            client.name(self._wait("name"))

    def cmd_list(self, args: list[str], line: str) -> None:
        client = self._connected()
        if client is not None:
            client.list(self._wait("list"))

    def cmd_ping(self, args: list[str], line: str) -> None:
        client = self._connected()
        if client is not None:
            client.ping(self._wait("ping"))

    def cmd_send(self, args: list[str], line: str) -> None:
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[2].strip():
            self._fail("usage: send ID TEXT")
            return
        try:
            to = int(parts[1])
            if not 0 <= to <= 0xFFFFFFFF:
                raise ValueError
        except ValueError:
            self._fail(f"ID must be a client number (see 'list'), not {printable(parts[1])!r}")
            return
        client = self._connected()
        if client is None:
            return
        text = parts[2]
        size = len(text.encode("utf-8", "replace"))
        if size > client.max_text:
            self._fail(f"message of {size} bytes is longer than the server forwards "
                       f"({client.max_text})")
            return
        try:
            client.send(to, text, self._wait("send"))
        except ChatError as exc:
            self.console.error(str(exc))
            self._done(ok=False)

    def cmd_wait(self, args: list[str], line: str) -> None:
        try:
            seconds = float(args[0]) if args else -1.0
            if not 0 <= seconds <= 86400:
                raise ValueError
        except ValueError:
            self._fail("usage: wait SECONDS (0-86400)")
            return
        self._busy = "wait"
        self._timer = self.loop.call_later(seconds, self._done)

    def cmd_help(self, args: list[str], line: str) -> None:
        for text in HELP.splitlines():
            self.console.show(text)

    def cmd_exit(self, args: list[str], line: str) -> None:
        client = self.client
        if client is None or client.closed:
            self._finish()
            return
        reply = self._wait("exit")
        if client.ready:
            client.bye(reply)
        else:
            client.close()

    _COMMANDS: dict[str, Callable[[ChatShell, list[str], str], None]] = {
        "connect": cmd_connect, "open": cmd_connect, "close": cmd_close, "time": cmd_time,
        "name": cmd_name, "list": cmd_list, "send": cmd_send, "ping": cmd_ping,
        "wait": cmd_wait, "help": cmd_help, "?": cmd_help, "exit": cmd_exit,
        "quit": cmd_exit}

    # -- answers ---------------------------------------------------------------------------

    def _answer(self, message: Message, token: int) -> None:
        ok = True
        if isinstance(message, TimeOk):
            self.console.show(f"server time: {printable(message.text)}")
        elif isinstance(message, NameOk):
            self.console.show(f"server name: {printable(message.name)}")
        elif isinstance(message, ListOk):
            self._show_list(message)
        elif isinstance(message, SendOk):
            self.console.show(f"delivered to {message.to}")
        elif isinstance(message, Pong):
            elapsed = (time.monotonic() - self._started) * 1000
            self.console.show(f"pong from {self.peer} in {elapsed:.2f} ms")
        elif isinstance(message, ErrorResponse):
            self.console.error(describe_error(message))
            ok = False
        if token == self._token and self._busy in ("time", "name", "list", "send", "ping"):
            self._done(ok)

    def _show_list(self, message: ListOk) -> None:
        me = self.client.client_id if self.client is not None else 0
        self.console.show(f"{len(message.clients)} client(s) connected:")
        self.console.show(f"  {'id':>6}  {'address':<39} port")
        for entry in message.clients:
            mark = "*" if entry.client_id == me else " "
            self.console.show(f"{mark} {entry.client_id:>6}  {printable(entry.address):<39} "
                              f"{entry.port}")

    # -- ChatClientHandler ---------------------------------------------------------------

    def ready(self, client: ChatClientProtocol, hello: HelloOk) -> None:
        sslobj = client.transport.get_extra_info("ssl_object") if client.transport else None
        over = f" over {sslobj.version()}" if sslobj is not None else ""
        self.console.show(f"connected to {self.peer}{over} as client {hello.client_id} "
                          f"(the server sees you as "
                          f"{format_address(printable(hello.address), hello.port)})")
        self._update_prompt()
        if self._busy == "connect":
            self._done()

    def indication(self, client: ChatClientProtocol, message: Message) -> None:
        if isinstance(message, Incoming):
            self.console.show(f"message from {message.sender} "
                              f"({format_address(printable(message.address), message.port)})"
                              f": {printable(message.text)}")
        elif isinstance(message, Joined):
            entry = message.client
            self.console.show(f"* client {entry.client_id} joined from "
                              f"{format_address(printable(entry.address), entry.port)}")
        elif isinstance(message, Left):
            try:
                reason = _LEAVE_REASONS[LeaveReason(message.reason)]
            except (ValueError, KeyError):  # a reason from a newer protocol version
                reason = f"reason {message.reason}"
            self.console.show(f"* client {message.client_id} left ({reason})")
        elif isinstance(message, Closing):
            self.console.show(f"* the server is closing the connection: "
                              f"{printable(message.reason)}")

    def response(self, client: ChatClientProtocol, response: Message) -> None:
        if isinstance(response, ErrorResponse):
            self.console.error(describe_error(response))

    def closed(self, client: ChatClientProtocol, exc: Exception | None) -> None:
        if client is not self.client:
            return
        self.client = None
        self._update_prompt()
        busy = self._busy
        if busy == "connect":
            self.console.error(f"cannot connect to {self.peer}: "
                               f"{exc or 'the server closed the connection'}")
            self._done(ok=False)
            return
        if busy == "exit":
            if self._interrupted:
                self.console.show(f"disconnected from {self.peer}" if exc is None else
                                  f"connection to {self.peer} lost: {exc}")
            self._done()
            return
        if busy == "close" and exc is None:
            self.console.show(f"disconnected from {self.peer}")
            self._done()
            return
        if exc is not None:
            self.console.error(f"connection to {self.peer} lost: {exc}")
        else:
            self.console.show(f"* the server closed the connection ({self.peer})")
        if busy is not None and busy != "wait":
            self._done(ok=False)

    def _update_prompt(self) -> None:
        client = self.client
        prompt = f"chat#{client.client_id}> " if client is not None and client.ready else (
            "chat> ")
        self.console.set_prompt(prompt)


# -- stdin wiring ------------------------------------------------------------------------


class StdinReader:
    """Connects stdin (of whatever kind) to the shell. See the module docstring."""

    def __init__(self, loop: Loop, shell: ChatShell, console: Console, fd: int,
                 kind: str) -> None:
        self.loop = loop
        self.shell = shell
        self.console = console
        self.fd = fd
        self.kind = kind
        self._watching = False
        self._saved_mode: list[Any] | None = None
        self._splitter = LineSplitter(shell.add_line, self._too_long)
        self._editor = LineEditor(console, shell.add_line, shell.input_ended)

    def start(self) -> None:
        if self.kind == StdinKind.NONE:
            self.shell.input_ended()
            return
        if self.kind == StdinKind.TERMINAL:
            self._saved_mode = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
            self.console.redraw()
        if self.kind == StdinKind.FILE:
            self.shell._pull = self._pull_file
            self.loop.call_soon(self.shell.pump)
            return
        try:
            self._watch(True)
        except UnsupportedFileError as exc:
            # A kind of file this poller refuses: read it directly like a regular file.
            log.info("stdin cannot be watched by %s (%s); reading it directly",
                     self.loop.backend, exc)
            self.kind = StdinKind.FILE
            self.restore_terminal()
            self.shell._pull = self._pull_file
            self.loop.call_soon(self.shell.pump)
            return
        self.shell._throttle = self._throttle

    def _watch(self, on: bool) -> None:
        if on and not self._watching:
            self.loop.add_reader(self.fd, self._readable)
            self._watching = True
        elif not on and self._watching:
            self.loop.remove_reader(self.fd)
            self._watching = False

    def _throttle(self, pause: bool) -> None:
        if not self.shell._input_eof:
            self._watch(not pause)

    def _readable(self) -> None:
        try:
            data, eof = _read_ready(self.fd)
        except OSError as exc:  # EIO: the terminal went away
            log.info("stdin: %s", exc)
            data, eof = b"", True
        if data:
            if self.kind == StdinKind.TERMINAL:
                self._editor.feed(data)
            else:
                self._splitter.feed(data)
        if eof:
            self._watch(False)
            self._splitter.finish()
            self.shell.input_ended()

    def _pull_file(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except OSError as exc:
            self.console.error(f"cannot read stdin: {exc}")
            data = b""
        if data:
            self._splitter.feed(data)
        else:
            self._splitter.finish()
            self.shell._input_eof = True

    def _too_long(self, size: int) -> None:
        self.shell._fail(f"input line longer than {MAX_LINE} bytes skipped")

    def stop(self) -> None:
        self._watch(False)
        self.restore_terminal()

    def restore_terminal(self) -> None:
        if self._saved_mode is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_mode)
            except termios.error:
                pass  # the terminal is gone
            self._saved_mode = None

    def suspend(self) -> None:
        """Ctrl-Z: give the terminal back in its normal mode, stop, and resume."""
        saved = self._saved_mode
        self.restore_terminal()
        self.console.echo("\n")
        os.kill(os.getpid(), signal.SIGSTOP)
        if saved is not None:
            self._saved_mode = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        self.console.redraw()


# -- command -----------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat", help="chat-forward client (interactive, or scripted with --exec)",
        description="Chat-forward client. Without a terminal (a pipe, a file, --exec) it "
                    "runs the commands in order and exits 1 if any failed.",
        epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("host", nargs="?", help="server to connect to at once")
    parser.add_argument("port", nargs="?", help="its port")
    parser.add_argument("-e", "--exec", action="append", dest="commands", default=[],
                        metavar="COMMAND",
                        help="run COMMAND (e.g. \"send 2 hello\"); repeatable; stdin is "
                             "then not read and the client exits after the last one")
    parser.add_argument("--transport", choices=sorted(STREAM_TRANSPORTS), default="tcp",
                        help="stream transport (default: tcp)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="seconds to wait for a connection or an answer (default: 10)")
    add_client_arguments(parser)
    add_backend_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.host is None) != (args.port is None):
        raise ConfigError("give both HOST and PORT (or neither, and use 'connect HOST PORT')")
    if args.port is not None and not (args.port.isdigit() and 0 < int(args.port) <= 65535):
        raise ConfigError(f"PORT must be a number 1-65535, not {args.port!r}")
    if not args.timeout > 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {args.timeout}")
    tls_context = client_context_from(args, alpn=ALPN)
    stdin_fd = sys.stdin.fileno() if sys.stdin is not None else -1
    stdout_is_tty = sys.stdout is not None and sys.stdout.isatty()
    kind = StdinKind.NONE if args.commands or stdin_fd < 0 else stdin_kind(stdin_fd,
                                                                           stdout_is_tty)
    interactive = kind == StdinKind.TERMINAL
    console = Console(sys.stdout, sys.stderr, interactive)
    with Loop(cli_backend=args.backend) as loop:
        shell = ChatShell(loop, console, transport=args.transport, timeout=args.timeout,
                          interactive=interactive, tls_context=tls_context)
        if args.host is not None:
            shell.add_line(f"connect {args.host} {args.port}")
        for command in args.commands:
            shell.add_line(command)
        reader = StdinReader(loop, shell, console, stdin_fd, kind)

        def interrupted(signum: int) -> None:
            console.echo("\n")
            shell.interrupt(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupted, signum)
        if interactive:
            loop.add_signal_handler(signal.SIGTSTP, reader.suspend)
            console.show("muxio chat: type 'help' for the commands")
        try:
            reader.start()
            loop.run_forever()
        finally:
            reader.stop()
            client = shell.client
            if client is not None and not client.closed:
                client.abort()
                loop.run_once(0)
                loop.run_once(0)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGTSTP):
                loop.remove_signal_handler(signum)
        if interactive:
            console.echo("\r\x1b[K")
    return shell.exit_code if shell.exit_code is not None else 0


__all__ = ["ChatShell", "Console", "LineEditor", "LineSplitter", "StdinKind", "printable",
           "register", "run", "stdin_kind"]
