"""The open-file limit of a server process: raised to what the system allows.

Every connection is one file descriptor. Linux sessions usually start with a soft limit
of 1024 open files and a hard limit far above it (20 000 here, often 524 288): the soft
one is a default, not a policy, and a process may raise it up to the hard one itself.
`muxio serve` does so at start (as Go's runtime and nginx's `worker_rlimit_nofile` do),
so that C10K needs no `ulimit -n` first; worker processes inherit the raised limit. Past
the hard limit, accept fails with EMFILE, and the TCP server pauses accepting and logs
what to do (muxio.transports.tcp). `select` is not helped: it cannot watch an fd >= 1024
whatever the limit, and says so when asked to.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("muxio.limits")


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (logged); returns the soft limit now.
    A refusal (a container that forbids it) leaves the limit as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft  # unlimited hard limits are raised by nobody here: setting one fails
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.warning("open-file limit stays at %d (cannot raise it to %d: %s)", soft, hard,
                    exc)
        return soft
    log.info("open-file limit raised from %d to %d (the hard limit)", soft, hard)
    return hard
