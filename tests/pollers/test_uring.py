"""The io_uring backend: refusals with reasons, and bad input handled exactly as on epoll.

The contract and agreement suites already run on `uring` by registration; these tests
cover what only io_uring has (a kernel that refuses it, SQ/CQ rings that fill up, polls
the kernel holds) and compare the bad-input cases with epoll side by side.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from muxio.cli.main import main as cli_main
from muxio.errors import BackendUnavailableError, BadFdError
from muxio.pollers import READ, WRITE, Poller, default_registry, uring_poller, uring_ring
from muxio.pollers.uring_poller import UringPoller

REASON = uring_poller.unavailable_reason()
needs_uring = pytest.mark.skipif(REASON is not None and os.environ.get("CI") != "true",
                                 reason=f"io_uring is not usable here: {REASON}")


def test_uring_runs_under_ci() -> None:
    """CI must run the uring backend in the whole matrix, not drop it quietly."""
    if os.environ.get("CI", "").lower() == "true":
        assert REASON is None, f"CI=true but the uring backend is unavailable: {REASON}"
    assert ("uring" in default_registry().available_names()) == (REASON is None)


# -- a kernel that refuses io_uring -----------------------------------------------------------


@pytest.fixture
def refusing_kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[OSError], None]]:
    """Make io_uring_setup fail with a chosen error; the cached verdict is reset around."""

    def refuse(error: OSError) -> None:
        def setup(entries: int, params: object) -> int:
            raise error

        monkeypatch.setattr(uring_ring, "io_uring_setup", setup)
        uring_poller.unavailable_reason.cache_clear()

    yield refuse
    monkeypatch.undo()
    uring_poller.unavailable_reason.cache_clear()


def test_refused_setup_lists_uring_unavailable_with_the_reason_and_auto_keeps_epoll(
        refusing_kernel: Callable[[OSError], None], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI's bench options list the matrix, which a narrowed run would name uring in.
    monkeypatch.delenv("MUXIO_TEST_BACKENDS", raising=False)
    refusing_kernel(OSError(errno.EPERM, "Operation not permitted"))
    registry = default_registry()
    reason = registry.get("uring").unavailable_reason()
    assert reason is not None
    assert "EPERM" in reason and "io_uring_disabled" in reason
    assert "uring" not in registry.available_names()
    assert registry.choose().name == "epoll"
    with pytest.raises(BackendUnavailableError, match="'uring' is not available here.*EPERM"):
        registry.create("uring")

    assert cli_main(["backends", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["uring"]["available"] is False
    assert rows["uring"]["reason"] == reason


def test_kernel_without_io_uring_is_named(refusing_kernel: Callable[[OSError], None]) -> None:
    refusing_kernel(OSError(errno.ENOSYS, "Function not implemented"))
    reason = uring_poller.unavailable_reason()
    assert reason is not None and "ENOSYS" in reason and "seccomp" in reason


def test_kernel_missing_a_feature_is_named(refusing_kernel: Callable[[OSError], None]) -> None:
    refusing_kernel(uring_ring.RingFeatureError(
        errno.ENOSYS, "this kernel's io_uring lacks IORING_FEAT_CQE_SKIP (Linux 5.17)"))
    reason = uring_poller.unavailable_reason()
    assert reason is not None and "CQE_SKIP" in reason and "5.17" in reason


def test_running_out_of_fds_is_not_a_refusal(refusing_kernel: Callable[[OSError], None]) -> None:
    """EMFILE at the availability check says nothing about the kernel: creating says it."""
    refusing_kernel(OSError(errno.EMFILE, "Too many open files"))
    assert uring_poller.unavailable_reason() is None
    with pytest.raises(OSError) as caught:
        UringPoller()
    assert caught.value.errno == errno.EMFILE


def test_missing_features_are_listed_by_name() -> None:
    assert uring_ring.missing_features(0xFFFFFFFF) == []
    assert "IORING_FEAT_EXT_ARG (Linux 5.11)" in uring_ring.missing_features(0)


# -- bad input, side by side with epoll -------------------------------------------------------


def _raise_fd_limit(minimum: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < minimum:
        if hard != resource.RLIM_INFINITY and hard < minimum:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {minimum}: raise it (ulimit -n)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (minimum, hard))


def _kernel_polls(poller: Poller) -> int:
    return poller.kernel_polls() if isinstance(poller, UringPoller) else 0


@needs_uring
@pytest.mark.parametrize("name", ["epoll", "uring"])
def test_ten_thousand_sockets_at_once(name: str) -> None:
    """10 000 registered sockets: silent while idle, exactly the ready ones reported, and
    nothing left in the kernel once they are unregistered."""
    _raise_fd_limit(10_500)
    pairs = [socket.socketpair() for _ in range(5_000)]
    try:
        with default_registry().create(name) as poller:
            for left, right in pairs:
                poller.register(left, READ)
                poller.register(right, READ)
            assert len(poller) == 10_000
            assert poller.poll(0) == []
            if isinstance(poller, UringPoller):
                assert _kernel_polls(poller) == 10_000
            senders = pairs[::1000]
            for _, right in senders:
                right.send(b"x")
            ready = dict(poller.poll(5))
            assert ready == {left.fileno(): READ for left, _ in senders}
            for left, right in pairs:
                poller.unregister(left)
                poller.unregister(right)
            assert poller.poll(0) == []
            assert len(poller) == 0
            if isinstance(poller, UringPoller):
                assert poller.armed() == {}
                assert _kernel_polls(poller) == 0
    finally:
        for left, right in pairs:
            left.close()
            right.close()


@needs_uring
@pytest.mark.parametrize("name", ["epoll", "uring"])
def test_fd_closed_behind_our_back(name: str) -> None:
    """Closed while registered: modify raises BadFdError, unregister cleans up, and the
    kernel lets go of the socket (the peer sees EOF) once the poller has polled."""
    left, right = socket.socketpair()
    right.setblocking(False)
    try:
        with default_registry().create(name) as poller:
            fd = left.fileno()
            poller.register(left, READ)
            poller.poll(0)
            left.close()
            with pytest.raises(BadFdError):
                poller.modify(fd, READ | WRITE)
            poller.unregister(fd)
            assert poller.poll(0) == []
            assert _kernel_polls(poller) == 0
            assert right.recv(10) == b""  # the socket is really closed: EOF
    finally:
        left.close()
        right.close()


@needs_uring
@pytest.mark.parametrize("name", ["epoll", "uring"])
def test_fd_closed_before_the_first_poll_is_forgotten(name: str) -> None:
    """register, close, poll: no event and no error (epoll drops a closed fd silently;
    io_uring's POLL_ADD fails with EBADF when submitted, and that is dropped too)."""
    left, right = socket.socketpair()
    try:
        with default_registry().create(name) as poller:
            fd = left.fileno()
            poller.register(left, READ)
            left.close()
            assert poller.poll(0.05) == []
            assert fd in poller
            poller.unregister(fd)
            assert _kernel_polls(poller) == 0
    finally:
        left.close()
        right.close()


@needs_uring
@pytest.mark.parametrize("name", ["epoll", "uring"])
def test_poller_under_emfile(name: str) -> None:
    """With no fd left, creating the poller raises the same OSError(EMFILE); a poller
    created before goes on working."""
    spec = default_registry().get(name)
    with spec.factory() as working:
        left, right = socket.socketpair()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        hog: list[int] = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(fds_in_use()) + 16, hard))
            while True:
                try:
                    hog.append(os.open(os.devnull, os.O_RDONLY))
                except OSError as exc:
                    assert exc.errno == errno.EMFILE
                    break
            with pytest.raises(OSError) as caught:
                spec.factory()
            assert caught.value.errno == errno.EMFILE
            working.register(left, READ)
            right.send(b"x")
            assert dict(working.poll(5)) == {left.fileno(): READ}
        finally:
            for fd in hog:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            left.close()
            right.close()


def fds_in_use() -> list[int]:
    return [int(name) for name in os.listdir("/proc/self/fd")]


# -- what only a ring has ------------------------------------------------------------------


@needs_uring
def test_full_submission_queue_is_submitted_on_the_way() -> None:
    """More changes between two polls than the SQ holds: all of them reach the kernel."""
    pairs = [socket.socketpair() for _ in range(50)]
    try:
        with UringPoller(sq_entries=4, cq_entries=8) as poller:
            for left, _ in pairs:
                poller.register(left, READ)
            assert poller.poll(0) == []
            assert poller.kernel_polls() == 50
            for left, _ in pairs:
                poller.unregister(left)
            poller.poll(0)
            assert poller.kernel_polls() == 0
    finally:
        for left, right in pairs:
            left.close()
            right.close()


@needs_uring
def test_full_completion_queue_loses_no_event_and_rearms() -> None:
    """More ready fds than the CQ holds: every one is reported (the kernel ends polls it
    cannot report on; they are re-armed), and later data is reported again."""
    pairs = [socket.socketpair() for _ in range(40)]
    try:
        with UringPoller(sq_entries=4, cq_entries=8) as poller:
            for left, _ in pairs:
                poller.register(left, READ)
            poller.poll(0)
            for _, right in pairs:
                right.send(b"x")
            seen: set[int] = set()
            for _ in range(100):
                seen.update(fd for fd, events in poller.poll(1) if events & READ)
                if len(seen) == len(pairs):
                    break
            assert seen == {left.fileno() for left, _ in pairs}
            for left, _ in pairs:
                left.recv(10)
            assert poller.poll(0.01) == []
            for _, right in pairs:
                right.send(b"y")
            seen.clear()
            for _ in range(100):
                seen.update(fd for fd, events in poller.poll(1) if events & READ)
                if len(seen) == len(pairs):
                    break
            assert seen == {left.fileno() for left, _ in pairs}
            for left, _ in pairs:
                left.recv(10)
            for _ in range(100):  # re-arms the polls the kernel ended (stale reports)
                if not poller.poll(0):
                    break
            assert poller.kernel_polls() == len(pairs)
    finally:
        for left, right in pairs:
            left.close()
            right.close()


@needs_uring
def test_register_then_unregister_before_a_poll_never_reaches_the_kernel() -> None:
    left, right = socket.socketpair()
    try:
        with UringPoller() as poller:
            poller.register(left, READ)
            poller.modify(left, WRITE)
            poller.unregister(left)
            assert poller.poll(0) == []
            assert poller.ring.submitted == 0
    finally:
        left.close()
        right.close()


@needs_uring
def test_blocking_poll_lets_other_threads_run() -> None:
    """The wait releases the GIL: another thread can make the fd ready while a poll
    blocks (a wait holding the GIL would see nothing until its timeout)."""
    read_fd, write_fd = os.pipe()
    results: list[list[tuple[int, int]]] = []
    try:
        with UringPoller() as poller:
            poller.register(read_fd, READ)
            poller.poll(0)
            started = threading.Event()

            def wait() -> None:
                started.set()
                results.append(poller.poll(30))

            thread = threading.Thread(target=wait)
            thread.start()
            started.wait(10)
            os.write(write_fd, b"x")
            thread.join(60)
            assert results == [[(read_fd, READ)]]
    finally:
        os.close(read_fd)
        os.close(write_fd)


@needs_uring
@pytest.mark.parametrize("name", ["epoll", "uring"])
def test_modify_after_the_number_is_reused_watches_the_new_file(name: str) -> None:
    """The loop's re-arm: an fd closed behind our back, its number given to a new file,
    then modify with the same events must watch the new file (the old one stays silent:
    its peer is still open, so nothing but the new file can wake the poller)."""
    old_left, old_right = socket.socketpair()
    new_left, new_right = socket.socketpair()
    try:
        with default_registry().create(name) as poller:
            fd = old_left.fileno()
            poller.register(fd, READ)
            assert poller.poll(0) == []
            os.dup2(new_left.fileno(), fd)  # closes the old file's number, reuses it
            poller.modify(fd, READ)
            new_right.send(b"x")
            assert dict(poller.poll(5)).get(fd, 0) & READ
            poller.unregister(fd)
            assert poller.poll(0) == []
            assert _kernel_polls(poller) == 0
    finally:
        os.close(fd)
        old_left.detach()
        for sock in (old_right, new_left, new_right):
            sock.close()
