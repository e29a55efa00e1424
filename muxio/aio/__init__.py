"""muxio.aio: an asyncio event loop on any muxio backend, with muxio's transports.

    import muxio.aio

    muxio.aio.run(main(), backend="epoll-et")           # like asyncio.run
    loop = muxio.aio.new_event_loop(backend="poll")      # like asyncio.new_event_loop
    with asyncio.Runner(loop_factory=muxio.aio.new_event_loop) as runner: ...
    asyncio.set_event_loop_policy(muxio.aio.EventLoopPolicy("select"))

`backend=None` resolves like everywhere in muxio: MUXIO_BACKEND, then the config file,
then the best backend available. An unknown name raises the same UnknownBackendError.

asyncio's Future, Task, streams, TaskGroup, timeouts, queues and locks run unchanged;
the transports asyncio protocols get are muxio's (TCP, UDP, and KCP through
`create_kcp_connection` / `create_kcp_server`). See loop.py for how an iteration works,
handles.py for level-triggered fd callbacks on edge-triggered backends, bridges.py for
the transports, and docs/aio.md for the differences from asyncio's own loop.
"""

from __future__ import annotations

from muxio.aio.kcp import (
    KcpServer,
    create_kcp_connection,
    create_kcp_server,
    open_kcp_connection,
    start_kcp_server,
)
from muxio.aio.loop import EventLoop
from muxio.aio.policy import EventLoopPolicy, new_event_loop, run

__all__ = [
    "EventLoop",
    "EventLoopPolicy",
    "KcpServer",
    "create_kcp_connection",
    "create_kcp_server",
    "new_event_loop",
    "open_kcp_connection",
    "run",
    "start_kcp_server",
]
