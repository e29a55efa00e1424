"""muxio.aio's asyncio surface on every backend: the calls asyncio code relies on, each
checked for its effect (CPython's own suite runs in test_cpython_asyncio.py)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

import muxio.aio
from muxio.aio.bridges import DatagramBridge, StreamBridge
from muxio.errors import ConfigError, UnknownBackendError
from muxio.transports.tcp import TcpTransport
from muxio.transports.udp import UdpTransport

T = TypeVar("T")
TIMEOUT = 20.0


async def close_server(server: asyncio.AbstractServer) -> None:
    """Close and wait until every connection it accepted is gone (Python 3.11's
    wait_closed does not wait for them; leaving them to the GC leaks fds)."""
    server.close()
    await server.wait_closed()
    async with asyncio.timeout(TIMEOUT):
        while server._active_count:  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)


def run(backend: str, coroutine: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, TIMEOUT)

    return muxio.aio.run(bounded(), backend=backend)


# -- ways in ---------------------------------------------------------------------------


def test_run_runner_and_policy_give_a_muxio_loop_on_the_backend(backend: str) -> None:
    async def which() -> str:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, muxio.aio.EventLoop)
        return loop.backend

    assert run(backend, which()) == backend
    with asyncio.Runner(loop_factory=lambda: muxio.aio.new_event_loop(backend)) as runner:
        assert runner.run(which()) == backend
    asyncio.set_event_loop_policy(muxio.aio.EventLoopPolicy(backend))
    try:
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(which()) == backend
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(None)


@pytest.mark.skipif(sys.version_info < (3, 12), reason=(
    f"asyncio.run(loop_factory=) needs Python 3.12+; this is {sys.version.split()[0]}"))
def test_asyncio_run_takes_muxio_as_loop_factory() -> None:
    async def which() -> object:
        return type(asyncio.get_running_loop())

    loop_class = asyncio.run(which(), loop_factory=muxio.aio.new_event_loop)  # type: ignore[call-arg,unused-ignore]
    assert loop_class is muxio.aio.EventLoop


def test_backend_none_resolves_like_muxio_loop(monkeypatch: pytest.MonkeyPatch,
                                               backend: str) -> None:
    monkeypatch.setenv("MUXIO_BACKEND", backend)
    with asyncio.Runner(loop_factory=muxio.aio.new_event_loop) as runner:
        assert runner.get_loop().backend == backend  # type: ignore[attr-defined]


def test_unknown_backend_is_the_usual_config_error() -> None:
    with pytest.raises(UnknownBackendError, match="not a backend; available"):
        muxio.aio.new_event_loop("no-such-poller")
    never_run = asyncio.sleep(0)
    with pytest.raises(ConfigError):
        muxio.aio.run(never_run, backend="no-such-poller")
    never_run.close()


# -- scheduling --------------------------------------------------------------------------


def test_callbacks_timers_threads_executor_and_contexts(backend: str) -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="-")

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        done = loop.create_future()
        loop.call_later(0.02, order.append, "later")
        loop.call_at(loop.time() + 0.01, order.append, "at")
        loop.call_soon(order.append, "soon")
        cancelled = loop.call_soon(order.append, "cancelled")
        cancelled.cancel()
        context = contextvars.copy_context()
        context.run(variable.set, "in its context")
        loop.call_soon(lambda: order.append(variable.get()), context=context)
        threading.Thread(target=loop.call_soon_threadsafe,
                         args=(done.set_result, "from a thread")).start()
        order.append(await done)
        order.append(str(await loop.run_in_executor(None, sum, [1, 2, 3])))
        await asyncio.sleep(0.05)
        return order

    order = run(backend, main())
    assert order[:2] == ["soon", "in its context"]
    assert order.index("at") < order.index("later")
    assert "from a thread" in order and "6" in order and "cancelled" not in order


def test_task_factory_exception_handler_and_debug_thread_check(backend: str) -> None:
    async def main() -> tuple[list[str], list[dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        made: list[str] = []
        errors: list[dict[str, Any]] = []

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
            made.append(coro.__name__)
            return asyncio.Task(coro, loop=loop, **kw)

        async def child() -> None:
            pass

        loop.set_task_factory(factory)
        await loop.create_task(child())
        loop.set_exception_handler(lambda loop, context: errors.append(context))

        def boom() -> None:
            raise ValueError("boom")

        loop.call_soon(boom)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.set_debug(True)
        failure: list[BaseException] = []

        def from_thread() -> None:
            try:
                loop.call_soon(print)
            except RuntimeError as exc:
                failure.append(exc)

        thread = threading.Thread(target=from_thread)
        thread.start()
        await loop.run_in_executor(None, thread.join)
        assert failure and "Non-thread-safe operation" in str(failure[0])
        return made, errors

    made, errors = run(backend, main())
    assert made[0] == "child"
    assert isinstance(errors[0]["exception"], ValueError)
    assert "handle" in errors[0]


def test_closing_with_a_pending_task_warns_like_asyncio(backend: str) -> None:
    loop = muxio.aio.new_event_loop(backend)
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    task = loop.create_task(asyncio.sleep(3600))
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    del task
    gc.collect()
    assert any(c["message"] == "Task was destroyed but it is pending!" for c in contexts)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)


def test_asyncgens_and_default_executor_shut_down(backend: str) -> None:
    finalized: list[str] = []

    async def generator() -> Any:
        try:
            yield 1
            yield 2
        finally:
            finalized.append("agen")

    async def main() -> None:
        agen = generator()
        assert await agen.__anext__() == 1
        await asyncio.get_running_loop().run_in_executor(None, finalized.append, "executor")
        run.keep = agen  # type: ignore[attr-defined]  # still suspended when run() ends

    run(backend, main())
    assert finalized == ["executor", "agen"]


# -- fd callbacks: level-triggered on every backend, edge-triggered ones included --------


def test_add_reader_is_level_triggered_even_on_edge_triggered_backends(backend: str) -> None:
    """A reader that takes one byte per callback still gets all 100: the fd is reported
    again while data is left (epoll-et would report it once without the emulation)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        got = bytearray()
        done = loop.create_future()

        def one_byte() -> None:
            got.extend(os.read(read_end, 1))
            if len(got) == 100:
                loop.remove_reader(read_end)
                done.set_result(None)

        loop.add_reader(read_end, one_byte)
        os.write(write_end, bytes(range(100)))
        await done
        return bytes(got)

    try:
        assert run(backend, main()) == bytes(range(100))
    finally:
        os.close(read_end)
        os.close(write_end)


def test_add_writer_is_called_while_writable_and_removal_stops_it(backend: str) -> None:
    left, right = socket.socketpair()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        calls = 0
        done = loop.create_future()

        def writable() -> None:
            nonlocal calls
            calls += 1
            if calls == 5:
                assert loop.remove_writer(left)
                done.set_result(None)

        loop.add_writer(left, writable)
        await done
        for _ in range(3):
            await asyncio.sleep(0)
        assert not loop.remove_writer(left)
        return calls

    try:
        assert run(backend, main()) == 5
    finally:
        left.close()
        right.close()


def test_bad_fds_raise_what_asyncio_code_catches(backend: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError):
            loop.add_reader(-1, print)
        with pytest.raises(ValueError):
            loop.add_reader(object(), print)  # type: ignore[arg-type]

    run(backend, main())


def test_select_refuses_fds_past_fd_setsize_with_a_value_error() -> None:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1100:
        pytest.skip(f"RLIMIT_NOFILE is {soft}: cannot open an fd >= 1024 here")
    read_end, write_end = os.pipe()
    high = os.dup2(read_end, 1100)

    async def main() -> None:
        with pytest.raises(ValueError, match="FD_SETSIZE"):
            asyncio.get_running_loop().add_reader(high, print)

    try:
        run("select", main())
    finally:
        for fd in (read_end, write_end, high):
            os.close(fd)


# -- sockets -----------------------------------------------------------------------------


def test_sock_operations(backend: str) -> None:
    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            client = socket.socket()
            client.setblocking(False)
            with client:
                accepted, _connected = await asyncio.gather(
                    loop.sock_accept(listener),
                    loop.sock_connect(client, listener.getsockname()))
                server, _ = accepted
                with server:
                    await loop.sock_sendall(client, b"x" * 300_000)
                    received = bytearray()
                    while len(received) < 300_000:
                        received += await loop.sock_recv(server, 65536)
                    buffer = bytearray(10)
                    await loop.sock_sendall(server, b"into")
                    count = await loop.sock_recv_into(client, buffer)
                    return [bytes(received[:3]), bytes(buffer[:count])]

    assert run(backend, main()) == [b"xxx", b"into"]


def test_sock_datagram_operations(backend: str) -> None:
    async def main() -> tuple[bytes, Any]:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            a.setblocking(False)
            b.setblocking(False)
            await loop.sock_sendto(a, b"datagram", b.getsockname())
            data, address = await loop.sock_recvfrom(b, 100)
            return data, address == a.getsockname()

    assert run(backend, main()) == (b"datagram", True)


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def test_transports_are_muxios_behind_asyncio_transports(backend: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport) and isinstance(transport, StreamBridge)
        assert isinstance(transport.muxio_transport, TcpTransport)
        assert transport.get_extra_info("peername")[1] == port
        assert transport.get_extra_info("backend") == backend
        assert isinstance(transport.get_extra_info("socket"), asyncio.trsock.TransportSocket)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()
        await writer.wait_closed()
        datagram, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        assert isinstance(datagram, asyncio.DatagramTransport)
        assert isinstance(datagram, DatagramBridge)
        assert isinstance(datagram._inner, UdpTransport)
        datagram.close()
        await close_server(server)

    run(backend, main())


def test_create_connection_returns_before_the_first_data_received(backend: str) -> None:
    """asyncio's order: the caller holds the transport before any data_received runs."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        returned: dict[str, Any] = {}
        seen: list[bool] = []
        done = loop.create_future()

        class Client(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                seen.append("transport" in returned)
                done.set_result(None)

        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello at once")
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(Client, "127.0.0.1", port)
        returned["transport"] = transport
        await done
        assert seen == [True]
        transport.close()
        await close_server(server)

    run(backend, main())


def test_writes_leave_before_run_until_complete_returns(backend: str) -> None:
    """muxio queues writes until the poll; stopping the loop sends them (Loop.flush)."""
    left, right = socket.socketpair()
    loop = muxio.aio.new_event_loop(backend)
    try:
        async def write() -> asyncio.BaseTransport:
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, left)
            transport.write(b"sent by now")  # type: ignore[attr-defined]
            return transport

        transport = loop.run_until_complete(write())
        right.settimeout(10)
        assert right.recv(100) == b"sent by now"
        transport.close()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
        right.close()


def test_buffered_protocol_gets_its_buffers_filled(backend: str) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        received = bytearray()
        lost = loop.create_future()

        class Buffered(asyncio.BufferedProtocol):
            def get_buffer(self, sizehint: int) -> bytearray:
                self.buffer = bytearray(7)  # smaller than what arrives
                return self.buffer

            def buffer_updated(self, nbytes: int) -> None:
                received.extend(self.buffer[:nbytes])

            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(None)

        async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(bytes(range(256)) * 40)
            writer.close()

        server = await asyncio.start_server(send, "127.0.0.1", 0)
        await loop.create_connection(Buffered, "127.0.0.1", server.sockets[0].getsockname()[1])
        await lost
        await close_server(server)
        return bytes(received)

    assert run(backend, main()) == bytes(range(256)) * 40


def test_protocol_errors_reach_the_handler_with_asyncio_objects(backend: str) -> None:
    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        contexts: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda loop, context: contexts.append(context))
        lost = loop.create_future()

        class Faulty(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                raise ValueError("bad data")

            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(exc)

        server = await loop.create_server(Faulty, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        writer.write(b"x")
        assert isinstance(await lost, ValueError)
        writer.close()
        await close_server(server)
        return contexts[0]

    context = run(backend, main())
    assert isinstance(context["exception"], ValueError)
    assert isinstance(context["transport"], StreamBridge)
    assert type(context["protocol"]).__name__ == "Faulty"


def test_unix_sockets(backend: str, tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")

    async def main() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(echo, path)
        reader, writer = await asyncio.open_unix_connection(path)
        assert isinstance(writer.transport, StreamBridge)
        writer.write(b"over a unix socket\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        await close_server(server)
        return line

    assert run(backend, main()) == b"over a unix socket\n"


def test_datagram_endpoint_echo(backend: str) -> None:
    async def main() -> tuple[bytes, Any]:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()

        class Server(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.transport.sendto(data.upper(), addr)  # type: ignore[attr-defined]

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                answer.set_result((data, addr))

        server, _ = await loop.create_datagram_endpoint(Server, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Client, remote_addr=address)
        client.sendto(b"shout")
        with pytest.raises(ValueError, match="Invalid address"):
            client.sendto(b"elsewhere", ("127.0.0.1", 9))
        result = await answer
        client.close()
        server.close()
        return result

    data, _addr = run(backend, main())
    assert data == b"SHOUT"


def test_pipes(backend: str) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        reader = asyncio.StreamReader()
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_end, "rb"))
        write_transport, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(write_end, "wb"))
        write_transport.write(b"through a pipe" * 10_000)  # type: ignore[attr-defined]
        write_transport.close()
        data = await reader.read()
        read_transport.close()
        return data

    assert run(backend, main()) == b"through a pipe" * 10_000


def test_subprocesses_are_awaited_with_a_pidfd(backend: str) -> None:
    async def main() -> tuple[bytes, int, int]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        out, _ = await process.communicate(b"shouted back")
        shell = await asyncio.create_subprocess_shell("exit 3")
        return out, process.returncode or 0, await shell.wait()

    assert run(backend, main()) == (b"SHOUTED BACK", 0, 3)


def test_signal_handlers(backend: str) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, "SIGUSR1")
        os.kill(os.getpid(), signal.SIGUSR1)
        try:
            return await got
        finally:
            assert loop.remove_signal_handler(signal.SIGUSR1)

    assert run(backend, main()) == "SIGUSR1"


def test_sendfile_on_a_transport_and_a_socket(backend: str) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    half = len(payload) // 2
    before = b"b" * (8 * 1024 * 1024)

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        received: list[bytes] = []
        both = loop.create_future()

        async def collect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received.append(await reader.read())
            writer.close()
            if len(received) == 2:
                both.set_result(None)

        server = await asyncio.start_server(collect, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()[:2]
        _reader, writer = await asyncio.open_connection(*address)
        with tempfile.TemporaryFile() as file:
            file.write(payload)
            file.flush()
            writer.write(before)  # more than the kernel takes: sendfile waits for it
            assert await loop.sendfile(writer.transport, file, 0, half) == half
            writer.write(b"|after")
            await writer.drain()
            writer.close()
            with socket.socket() as raw:
                raw.setblocking(False)
                await loop.sock_connect(raw, address)
                file.seek(0)
                assert await loop.sock_sendfile(raw, file) == len(payload)
        await both
        await close_server(server)
        return sorted(received, key=len)

    assert run(backend, main()) == [payload, before + payload[:half] + b"|after"]


# -- muxio Futures are awaitable ----------------------------------------------------------


def test_muxio_futures_are_awaitable_from_asyncio_code(backend: str) -> None:
    from muxio.futures import Future
    from muxio.transports import tcp

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, muxio.aio.EventLoop)
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _protocol = await tcp.connect(Echo, "127.0.0.1", port, loop=loop.muxio_loop)
        transport.close()
        with pytest.raises(ConnectionRefusedError):
            await tcp.connect(Echo, "127.0.0.1", _closed_port(), loop=loop.muxio_loop)
        pending: Future[int] = Future(loop.muxio_loop)
        task = loop.create_task(_await(pending))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pending.cancelled()
        cancelled: Future[int] = Future(loop.muxio_loop)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await close_server(server)

    run(backend, main())


async def _await(future: Any) -> Any:
    return await future


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_muxio_future_completed_by_another_thread_wakes_the_awaiter() -> None:
    """The future's scheduler is a muxio Loop run by another thread: the completion
    reaches the awaiting asyncio loop through call_soon_threadsafe."""
    from muxio.futures import Future
    from muxio.loop import Loop

    async def main() -> int:
        with Loop("poll") as other:
            future: Future[int] = Future(other)
            awaiting = asyncio.ensure_future(_await(future))
            await asyncio.sleep(0)  # the awaiter has registered its callback

            def complete_in_that_thread() -> None:
                future.set_result(42)
                other.run_once()  # runs the done-callbacks, in this thread

            thread = threading.Thread(target=complete_in_that_thread)
            thread.start()
            try:
                return int(await awaiting)
            finally:
                await asyncio.get_running_loop().run_in_executor(None, thread.join)

    assert asyncio.run(main()) == 42
