"""`muxio serve SERVICE --workers N`: one supervisor, N worker processes on one port.

Theory of operation
-------------------
The supervisor opens no socket. It starts N workers, each an ordinary `muxio serve`
process (`python -m muxio serve SERVICE <the same options> --workers 1 --reuse-port`)
with its own loop and backend, and then only watches them. Every worker binds the port
with SO_REUSEPORT, and the kernel spreads the work over their sockets by a hash of the
4-tuple (source and destination address and port):

- TCP: each new connection goes to one worker's listener and stays with that process;
- UDP (DNS): each datagram goes to one worker; a query and its answer need no more;
- KCP: every datagram of one peer has the same 4-tuple (a KCP client sends from one
  connected UDP socket), so the hash sends the whole session to the worker that opened
  it. That holds while the set of sockets in the port's group stays the same: when a
  worker dies or is replaced, the kernel re-spreads the hash over the new set, and a
  session whose datagrams now reach another worker is unknown there (its datagrams are
  dropped); its client sees a dead link and connects again. TCP connections never move.

Readiness: a worker is ready when it prints its `muxio: serving ...` line (after it has
bound the port). Its stderr is relayed line by line, prefixed with its slot, except a
`muxio: error: ...` line, which the supervisor keeps as the reason the worker stopped.
Its stdin is a pipe only the supervisor holds (the lifeline): if the supervisor dies, even
by SIGKILL, the workers read EOF there and stop gracefully rather than keep the port.
Workers run in their own session, so a Ctrl-C in a terminal reaches the supervisor only,
which then stops them in order.

Starting: the supervisor starts all N at once and waits until each is ready. If one
exits first (a bad zone file, the port in use), it stops the others and exits 2 with one
`muxio: error:` line naming that worker's own error.

Restarts: a worker that exits while it should be running is started again after a delay
that doubles with each consecutive failure (0.1 s, 0.2 s, ... at most 30 s; logged). A
worker that ran `STABLE_SECONDS` before it died starts the count again. A slot whose
restarts fail before they are ready `MAX_START_FAILURES` times in a row makes the
supervisor give up: it stops every worker and exits 2 with that worker's error.

Signals:
- SIGTERM / SIGINT: graceful stop. Each worker gets SIGTERM: it stops accepting, lets its
  in-flight work finish within --graceful-timeout, and exits 0 (muxio.cli.graceful); the
  supervisor exits 0 once all have. A second SIGTERM/SIGINT is passed on: the workers
  close at once. A worker still alive `KILL_MARGIN` seconds after its graceful timeout is
  killed (logged).
- SIGHUP, DNS: passed to every worker, which reloads its zone files in place (a broken
  file is logged and the zones in service stay). No socket changes, so no query is lost.
- SIGHUP, other services: a rolling restart, one slot at a time: a new worker starts and
  binds beside the old one; once it is ready, the old one stops gracefully (it accepts
  what its queue holds, then closes its listener); then the next slot. If a new worker
  fails to start, the restart stops there and the old workers go on serving.
  Linux resets a connection still in a closing listener's queue (not yet accepted) unless
  `net.ipv4.tcp_migrate_req = 1` (Linux 5.14+), which moves it to another worker of the
  port; the supervisor says so once when that setting is off. The old worker accepts its
  whole queue right before it closes, which leaves only the connections completed in that
  instant exposed.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from muxio.cli.graceful import ENV_WORKER
from muxio.config import WorkersChoice
from muxio.errors import ConfigError, MuxioError
from muxio.loop import Loop, TimerHandle

log = logging.getLogger("muxio.workers")

INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 30.0
STABLE_SECONDS = 10.0
"""A worker that ran this long before it died is restarted as if for the first time."""
MAX_START_FAILURES = 5
START_TIMEOUT = 60.0
"""Seconds a worker has to print its serving line (interpreter start on a loaded host)."""
KILL_MARGIN = 5.0
"""Seconds past --graceful-timeout before a worker that does not exit is killed."""
RELOAD_BY_SIGNAL = frozenset({"dns"})
"""Services that reload in place on SIGHUP (the signal is passed on, not a restart)."""
_READY_MARK = "muxio: serving "
_ERROR_MARK = "muxio: error: "
_MAX_LINE = 8192
"""A worker's output line longer than this is cut (a worker cannot make us hold more)."""
_MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


class WorkersError(MuxioError):
    """The workers could not be started or kept running (one line, exit 2)."""


def check_reuse_port(count: int) -> None:
    """Refuse --workers > 1 where SO_REUSEPORT does not spread connections over sockets."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError(
            f"--workers {count} needs SO_REUSEPORT that spreads connections over the "
            f"workers' sockets (Linux 3.9+); {sys.platform} does not have it: run with "
            f"--workers 1, or one server per port behind a balancer")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # bound to nothing
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        except OSError as exc:
            raise ConfigError(f"--workers {count} needs SO_REUSEPORT, which this kernel "
                              f"refuses ({exc.strerror}); run with --workers 1") from None


def worker_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The command line (after `muxio`) of one worker: the same options as this process,
    with `--workers 1 --reuse-port`. Rebuilt from the parsed options, so it does not
    depend on how this process was called (console script, `python -m`, `main(argv)`)."""
    argv = ["-v"] * int(getattr(args, "verbose", 0) or 0)
    argv += ["serve", args.service]
    positionals: list[str] = []
    for action in parser._actions:
        if action.dest in _NOT_PASSED or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if action.dest == "host" and value is None:
            value = ""  # `muxio serve` turned '' (every interface) into None
        if not action.option_strings:
            positionals.append(str(value))
            continue
        if value == action.default:
            continue
        flag = next((name for name in action.option_strings if name.startswith("--")),
                    action.option_strings[0])
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            argv.append(flag)
        elif isinstance(action, argparse._CountAction):
            argv += [flag] * int(value or 0)
        elif isinstance(action, argparse._AppendAction):
            for item in value or ():
                argv += [flag, str(item)]
        elif isinstance(action, argparse._StoreAction) and action.nargs is None:
            if value is not None:
                argv += [flag, str(value)]
        else:  # an option shape this function does not know: say so, do not guess
            raise ConfigError(f"--workers cannot pass {flag} on to its workers yet")
    return [*argv, *positionals, "--workers", "1", "--reuse-port"]


_NOT_PASSED = frozenset({"help", "workers", "reuse_port", "verbose"})


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass(eq=False)
class Worker:
    """One worker process and what the supervisor knows of it."""

    slot: int
    process: subprocess.Popen[bytes]
    started: float
    ready: bool = False
    stopping: bool = False
    """Asked to stop (SIGTERM sent): its exit is expected, not a failure."""
    serving_line: str = ""
    error_line: str = ""
    """Its `muxio: error:` message, if it printed one."""
    last_stderr: str = ""
    returncode: int | None = None
    start_timer: TimerHandle | None = None
    kill_timer: TimerHandle | None = None
    _partial: dict[int, bytearray] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.returncode is None

    def reason(self) -> str:
        """How it ended, with its own error message (or last stderr line) if any."""
        assert self.returncode is not None
        how = describe_exit(self.returncode)
        said = self.error_line or self.last_stderr
        return f"{how}: {said}" if said else how

    def start_error(self) -> str:
        """Why it did not start: its own error line, else how it ended."""
        assert self.returncode is not None
        return self.error_line or self.reason()

    def cancel_timers(self) -> None:
        for timer in (self.start_timer, self.kill_timer):
            if timer is not None:
                timer.cancel()
        self.start_timer = self.kill_timer = None

    def signal(self, signum: int) -> None:
        if self.alive:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass  # exited; the SIGCHLD handler will see it


@dataclass(eq=False)
class Slot:
    index: int
    current: Worker | None = None
    replacement: Worker | None = None
    """The new worker of a rolling restart, until it is ready and the old one retires."""
    failures: int = 0
    """Consecutive failures (quick deaths or failed starts) since it last ran stably:
    the exponent of the restart delay."""
    start_failures: int = 0
    """Consecutive restarts that exited before they were ready."""
    restart: TimerHandle | None = None


class Supervisor:
    """Starts, watches, restarts and stops the workers of one `muxio serve` command."""

    def __init__(self, loop: Loop, argv: list[str], *, count: int, service: str,
                 graceful_timeout: float, describe_choice: str,
                 env: dict[str, str] | None = None) -> None:
        self.loop = loop
        self.argv = argv
        self.service = service
        self.graceful_timeout = graceful_timeout
        self.describe_choice = describe_choice
        self.env = dict(os.environ if env is None else env)
        self.slots = [Slot(index) for index in range(1, count + 1)]
        self.workers: list[Worker] = []
        """Every worker still alive (or not yet reaped)."""
        self.phase = "starting"  # -> running -> stopping
        self.failure: str | None = None
        self.rolling: list[Slot] = []
        self._rolling = False
        self._migrate_hint_given = False

    # -- running -------------------------------------------------------------------------

    def run(self) -> int:
        loop = self.loop
        handlers = {signal.SIGINT: self._stop_signal, signal.SIGTERM: self._stop_signal,
                    signal.SIGHUP: self._hangup, signal.SIGCHLD: self._reap}
        for signum, handler in handlers.items():
            loop.add_signal_handler(signum, handler, signum)
        try:
            for slot in self.slots:
                slot.current = self._spawn(slot)
            loop.run_forever()
        finally:
            for worker in list(self.workers):  # only after an error in the loop itself
                worker.signal(signal.SIGKILL)
                worker.process.wait()
                self._forget(worker)
            for signum in handlers:
                loop.remove_signal_handler(signum)
        if self.failure is not None:
            raise WorkersError(self.failure)
        print(f"muxio: {self.service} stopped ({len(self.slots)} workers)", flush=True)
        return 0

    def _spawn(self, slot: Slot) -> Worker:
        env = {**self.env, ENV_WORKER: str(slot.index)}
        process = subprocess.Popen(
            [sys.executable, "-m", "muxio", *self.argv], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            start_new_session=True)
        worker = Worker(slot.index, process, self.loop.time())
        self.workers.append(worker)
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            fd = stream.fileno()
            os.set_blocking(fd, False)
            worker._partial[fd] = bytearray()
            self.loop.add_reader(fd, self._readable, worker, fd)
        worker.start_timer = self.loop.call_later(START_TIMEOUT, self._start_timeout, worker)
        log.debug("worker %d started (pid %d)", slot.index, worker.pid)
        return worker

    # -- output --------------------------------------------------------------------------

    def _readable(self, worker: Worker, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.debug("reading worker %d failed: %r", worker.slot, exc)
            data = b""
        if not data:
            self._close_stream(worker, fd)
            return
        buffer = worker._partial[fd]
        buffer += data
        *lines, rest = bytes(buffer).split(b"\n")
        if len(rest) > _MAX_LINE:
            lines.append(rest[:_MAX_LINE])
            rest = b""
        buffer[:] = rest
        for line in lines:
            self._line(worker, fd, line[:_MAX_LINE].decode("utf-8", "replace").rstrip())

    def _line(self, worker: Worker, fd: int, text: str) -> None:
        assert worker.process.stdout is not None
        if fd == worker.process.stdout.fileno():
            if not worker.ready and text.startswith(_READY_MARK):
                worker.serving_line = text
                self._ready(worker)
            return
        if text.startswith(_ERROR_MARK):
            worker.error_line = text[len(_ERROR_MARK):]
            return
        if text:
            worker.last_stderr = text
            if self.failure is not None:
                return  # giving up: the one error line says it all
            print(f"[worker {worker.slot}] {text}", file=sys.stderr, flush=True)

    def _close_stream(self, worker: Worker, fd: int) -> None:
        if fd in worker._partial:
            rest = worker._partial.pop(fd)
            if rest:
                self._line(worker, fd, bytes(rest[:_MAX_LINE]).decode("utf-8", "replace"))
            self.loop.remove_reader(fd)
            for stream in (worker.process.stdout, worker.process.stderr):
                if stream is not None and not stream.closed and stream.fileno() == fd:
                    stream.close()

    # -- lifecycle events ----------------------------------------------------------------

    def _ready(self, worker: Worker) -> None:
        worker.ready = True
        if worker.start_timer is not None:
            worker.start_timer.cancel()
            worker.start_timer = None
        slot = self.slots[worker.slot - 1]
        if self.phase == "stopping":
            return  # it was asked to stop (SIGTERM) already
        if self.phase == "starting":
            if all(s.current is not None and s.current.ready for s in self.slots):
                self.phase = "running"
                first = self.slots[0].current
                assert first is not None
                pids = ", ".join(str(s.current.pid) for s in self.slots if s.current)
                print(f"{first.serving_line}; {len(self.slots)} workers (pids {pids}; "
                      f"decided by {self.describe_choice})", flush=True)
            return
        if worker is slot.replacement:
            old = slot.current
            slot.current, slot.replacement = worker, None
            log.info("rolling restart: worker %d replaced (pid %s -> %d)", slot.index,
                     old.pid if old else "-", worker.pid)
            if old is not None and old.alive:
                self._retire(old)
            else:
                self._roll_next()
            return
        slot.start_failures = 0
        log.info("worker %d is serving again (pid %d)", slot.index, worker.pid)

    def _reap(self, _signum: int = signal.SIGCHLD) -> None:
        for worker in list(self.workers):
            returncode = worker.process.poll()
            if returncode is not None:
                worker.returncode = returncode
                self._exited(worker)

    def _forget(self, worker: Worker) -> None:
        for fd in list(worker._partial):
            self._close_stream(worker, fd)
        worker.cancel_timers()
        if worker.process.stdin is not None:
            worker.process.stdin.close()
        if worker in self.workers:
            self.workers.remove(worker)

    def _exited(self, worker: Worker) -> None:
        # Read what it wrote last (its error line) before judging; the pipes are at EOF
        # unless something it started still holds them, so the reads are bounded.
        for fd in list(worker._partial):
            for _ in range(64):
                if fd not in worker._partial:
                    break
                self._readable(worker, fd)
        self._forget(worker)
        slot = self.slots[worker.slot - 1]
        if self.phase == "stopping":
            if worker.returncode not in (0, None) and not worker.stopping:
                log.warning("worker %d (pid %d) %s", worker.slot, worker.pid, worker.reason())
            if slot.current is worker:
                slot.current = None
            if slot.replacement is worker:
                slot.replacement = None
            if not self.workers:
                self.loop.stop()
            return
        if worker.stopping:  # retired by a rolling restart
            log.info("worker %d (pid %d) retired: %s", worker.slot, worker.pid,
                     describe_exit(worker.returncode or 0))
            self._roll_next()
            return
        if self.phase == "starting":
            self._give_up(f"worker {worker.slot} could not start: {worker.start_error()}")
            return
        if worker is slot.replacement:
            slot.replacement = None
            log.error("rolling restart stopped: the new worker %d could not start (%s); "
                      "the previous workers go on serving", slot.index, worker.start_error())
            self._end_roll()
            return
        slot.current = None
        slot.failures += 1
        if slot.replacement is not None:
            log.warning("worker %d (pid %d) %s; its replacement is starting", slot.index,
                        worker.pid, worker.reason())
            return
        if not worker.ready:
            slot.start_failures += 1
            if slot.start_failures >= MAX_START_FAILURES:
                self._give_up(f"worker {slot.index} failed to start {slot.start_failures} "
                              f"times in a row: {worker.start_error()}")
                return
        elif self.loop.time() - worker.started >= STABLE_SECONDS:
            slot.failures = 1  # it ran long enough: back to the shortest delay
        delay = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** max(0, slot.failures - 1))
        log.warning("worker %d (pid %d) %s; restarting it in %.1f s", slot.index, worker.pid,
                    worker.reason(), delay)
        slot.restart = self.loop.call_later(delay, self._restart, slot)

    def _restart(self, slot: Slot) -> None:
        slot.restart = None
        if self.phase != "stopping" and slot.current is None:
            slot.current = self._spawn(slot)

    def _start_timeout(self, worker: Worker) -> None:
        if worker.alive and not worker.ready:
            worker.error_line = f"no serving line within {START_TIMEOUT:g} s"
            worker.signal(signal.SIGKILL)

    def _give_up(self, message: str) -> None:
        """Stop every worker; `run` then raises `message` (printed as the one error line)."""
        if self.failure is None:
            self.failure = message
        self._stop(None)

    # -- stopping ------------------------------------------------------------------------

    def _stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.phase == "stopping":
            log.info("%s received again: workers close at once", name)
            for worker in self.workers:
                worker.signal(signal.SIGTERM)
            return
        self._stop(f"{name} received")

    def _stop(self, reason: str | None) -> None:
        if self.phase == "stopping":
            return
        self.phase = "stopping"
        if reason is not None:
            log.info("%s: stopping %d workers gracefully", reason, len(self.workers))
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
        for worker in self.workers:
            self._ask_to_stop(worker)
        if not self.workers:
            self.loop.stop()

    def _ask_to_stop(self, worker: Worker) -> None:
        if not worker.stopping:
            worker.stopping = True
            worker.signal(signal.SIGTERM)
            worker.kill_timer = self.loop.call_later(self.graceful_timeout + KILL_MARGIN,
                                                     self._kill_late, worker)

    def _kill_late(self, worker: Worker) -> None:
        if worker.alive:
            log.warning("worker %d (pid %d) still running %g s after its graceful timeout: "
                        "killing it", worker.slot, worker.pid, KILL_MARGIN)
            worker.signal(signal.SIGKILL)

    # -- SIGHUP --------------------------------------------------------------------------

    def _hangup(self, _signum: int) -> None:
        if self.phase != "running":
            log.warning("SIGHUP ignored: the workers are %s", self.phase)
            return
        if self.service in RELOAD_BY_SIGNAL:
            log.info("SIGHUP: %d workers reload in place", len(self.workers))
            for worker in self.workers:
                if worker.ready:
                    worker.signal(signal.SIGHUP)
            return
        if self._rolling:
            log.warning("SIGHUP ignored: a rolling restart is under way")
            return
        self._hint_migrate_req()
        log.info("SIGHUP: rolling restart of %d workers", len(self.slots))
        self._rolling = True
        self.rolling = list(self.slots)
        self._roll_next()

    def _roll_next(self) -> None:
        if self.phase != "running" or not self._rolling:
            return
        while self.rolling:
            slot = self.rolling.pop(0)
            if slot.current is not None and slot.current.ready:
                slot.replacement = self._spawn(slot)
                return
        self._end_roll()

    def _end_roll(self) -> None:
        if self._rolling:
            self._rolling = False
            self.rolling.clear()
            log.info("rolling restart finished")

    def _retire(self, worker: Worker) -> None:
        self._ask_to_stop(worker)

    def _hint_migrate_req(self) -> None:
        if self._migrate_hint_given or self.service in RELOAD_BY_SIGNAL:
            return
        self._migrate_hint_given = True
        try:
            enabled = _MIGRATE_REQ.read_text().strip() != "0"
        except OSError:
            return  # an older kernel: nothing to suggest
        if not enabled:
            log.info("net.ipv4.tcp_migrate_req is 0: a connection still queued on a "
                     "stopping worker at the instant it closes is reset; set it to 1 to "
                     "have the kernel move it to another worker")


def supervise(args: argparse.Namespace, workers: WorkersChoice,
              argv_for: Callable[[argparse.Namespace], list[str]] | None = None) -> int:
    """Run `args`'s service in `workers.count` processes; returns the exit code."""
    count = workers.count
    check_reuse_port(count)
    if args.port == 0:
        raise ConfigError(f"--workers {count} needs a fixed --port: with --port 0 each "
                          f"worker would listen on a port of its own")
    if args.service == "chat" and not getattr(args, "bus", None):
        raise ConfigError(f"--workers {count} for chat needs --bus redis://HOST:PORT: the "
                          f"workers share their client list and forward messages through "
                          f"it (without it a client sees only its own worker's clients)")
    argv = (argv_for or (lambda a: worker_argv(a.service_parser, a)))(args)
    with Loop(cli_backend=args.backend) as loop:
        supervisor = Supervisor(loop, argv, count=count, service=args.service,
                                graceful_timeout=args.graceful_timeout,
                                describe_choice=workers.source)
        return supervisor.run()
