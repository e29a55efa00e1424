"""`muxio bench loss`: TCP, muxio's KCP and the C ikcp on a link that drops packets.

    sudo muxio bench loss --loss 0,1,5,10,20 --json loss.json --plot loss.png

Theory of operation
-------------------
A network namespace of our own holds only a loopback device (MTU 1500; TSO, GSO and GRO off
with ethtool, so every TCP segment and every UDP datagram is one packet when the rule
looks at it). One nftables rule on the namespace's input hook drops a given fraction of the
packets (`numgen random`); on a loopback every packet, client to server and server to
client, passes that hook once, so the loss applies to both directions. A counter before
the drop rule counts the packets each run puts on the wire.

Each measurement is one `python -m muxio.bench.kcp_link run` started inside the namespace
with `ip netns exec` (its server is a child of it, so it is in the namespace too), and
prints one JSON line. Per loss level, the kinds (TCP, muxio KCP per profile, C ikcp) run in
interleaved rounds; the table shows medians over rounds. Workloads: a ping-pong of
`--size`-byte messages (p50, p99, max round-trip time, messages done within `--cap` s,
packets per message) and a one-way bulk transfer (goodput).

Creating a namespace needs root or CAP_NET_ADMIN; without it the command says so in one
line and exits 2.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from muxio.errors import MuxioError

_CAP_NET_ADMIN = 12
TABLE = "muxio_loss"


class LossBenchError(MuxioError):
    """The loss benchmark cannot run here (privileges, tools)."""


@dataclass
class Measurement:
    kind: str
    profile: str
    workload: str
    loss: float
    done: int
    messages: int
    rtts_ms: list[float] = field(default_factory=list)
    goodput_mb_s: float = 0.0
    packets: int = 0
    error: str | None = None

    @property
    def column(self) -> str:
        return {"tcp": "TCP", "kcp": f"muxio KCP {self.profile}",
                "ckcp": f"C ikcp {self.profile}"}[self.kind]


def has_net_admin(status_path: str = "/proc/self/status") -> bool:
    """Root, or CAP_NET_ADMIN in the effective set."""
    if os.geteuid() == 0:
        return True
    try:
        with open(status_path, encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


def check_requirements() -> None:
    """Raise LossBenchError (one line saying what to do) unless the benchmark can run."""
    if not has_net_admin():
        raise LossBenchError("bench loss needs root or CAP_NET_ADMIN to create a network "
                             "namespace and its nftables rule; run it with sudo")
    missing = [tool for tool, package in (("ip", "iproute2"), ("nft", "nftables"),
                                          ("ethtool", "ethtool"))
               if shutil.which(tool) is None]
    if missing:
        raise LossBenchError(f"bench loss needs {', '.join(missing)}: "
                             f"apt-get install iproute2 nftables ethtool")


class Namespace:
    """A network namespace with a lossy loopback; a context manager that removes it."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"muxio-loss-{os.getpid()}"

    def __enter__(self) -> Namespace:
        _run(["ip", "netns", "add", self.name])
        try:
            self.exec(["ip", "link", "set", "lo", "mtu", "1500", "up"])
            self.exec(["ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off",
                       "tx-udp-segmentation", "off"], check=False)
            self.set_loss(0.0)
        except BaseException:
            _run(["ip", "netns", "del", self.name], check=False)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        _run(["ip", "netns", "del", self.name], check=False)

    def exec(self, argv: Sequence[str], *, check: bool = True,
             timeout: float | None = 60) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout)

    def set_loss(self, loss: float) -> None:
        """Drop `loss` (0..1) of the packets on the input hook (both directions)."""
        per_million = round(loss * 1_000_000)
        rules = [f"table inet {TABLE} {{", "  chain input {",
                 "    type filter hook input priority 0; policy accept;",
                 "    meta l4proto { tcp, udp } counter"]
        if per_million > 0:
            rules.append(f"    meta l4proto {{ tcp, udp }} numgen random mod 1000000 "
                         f"< {per_million} drop")
        rules += ["  }", "}"]
        self.exec(["nft", "flush", "ruleset"])
        _run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], stdin="\n".join(rules))

    def packets(self) -> int:
        listing = self.exec(["nft", "list", "table", "inet", TABLE]).stdout
        for line in listing.splitlines():
            if "counter packets" in line and "drop" not in line:
                words = line.split()
                return int(words[words.index("packets") + 1])
        return 0


def _run(argv: Sequence[str], *, check: bool = True, stdin: str | None = None,
         timeout: float | None = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise LossBenchError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def measure(namespace: Namespace, kind: str, profile: str, workload: str, loss: float, *,
            messages: int, size: int, nbytes: int, cap: float,
            backend: str | None) -> Measurement:
    argv = [sys.executable, "-m", "muxio.bench.kcp_link", "run", "--kind", kind,
            "--workload", workload, "--profile", profile, "--messages", str(messages),
            "--size", str(size), "--bytes", str(nbytes), "--cap", str(cap)]
    if backend:
        argv += ["--backend", backend]
    before = namespace.packets()
    completed = namespace.exec(argv, check=False, timeout=cap + 60)
    packets = namespace.packets() - before
    try:
        raw: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return Measurement(kind, profile, workload, loss, 0, messages, packets=packets,
                           error=f"no result: {completed.stderr.strip()[-300:]}")
    seconds = raw["seconds"]
    return Measurement(
        kind, raw["profile"], workload, loss, raw["done"], raw["messages"],
        rtts_ms=raw["rtts_ms"], packets=packets, error=raw["error"],
        goodput_mb_s=raw["nbytes"] / seconds / 1e6 if seconds and raw["done"] else 0.0)


def run_matrix(kinds: Sequence[tuple[str, str]], losses: Sequence[float], *,
               rounds: int, messages: int, size: int, nbytes: int, cap: float,
               backend: str | None, workloads: Sequence[str] = ("pingpong", "bulk"),
               progress: Callable[[str], None] | None = None) -> list[Measurement]:
    """Every (kind, profile) x loss x workload, `rounds` interleaved times."""
    results: list[Measurement] = []
    with Namespace() as namespace:
        for loss in losses:
            namespace.set_loss(loss)
            for _ in range(rounds):
                for workload in workloads:
                    for kind, profile in kinds:
                        if progress is not None:
                            progress(f"{loss:.0%} {workload} {kind} {profile}")
                        results.append(measure(
                            namespace, kind, profile, workload, loss, messages=messages,
                            size=size, nbytes=nbytes, cap=cap, backend=backend))
    return results


@dataclass
class Row:
    column: str
    loss: float
    p50: float | None
    p99: float | None
    max: float | None
    done: str
    packets_per_message: float | None
    goodput_mb_s: float | None
    errors: list[str]


def summarise(results: Sequence[Measurement]) -> list[Row]:
    """Medians over rounds, per (column, loss)."""
    groups: dict[tuple[str, float], list[Measurement]] = {}
    for result in results:
        groups.setdefault((result.column, result.loss), []).append(result)
    rows = []
    for (column, loss), group in groups.items():
        pings = [r for r in group if r.workload == "pingpong"]
        bulks = [r for r in group if r.workload == "bulk"]

        def median_of(pick: Callable[[list[float]], float],
                      pings: list[Measurement] = pings) -> float | None:
            values = [pick(sorted(r.rtts_ms)) for r in pings if r.rtts_ms]
            return statistics.median(values) if values else None

        rows.append(Row(
            column, loss,
            median_of(lambda xs: xs[len(xs) // 2]),
            median_of(lambda xs: xs[min(len(xs) - 1, int(len(xs) * 0.99))]),
            median_of(lambda xs: xs[-1]),
            "/".join(f"{r.done}" for r in pings) + f" of {pings[0].messages}" if pings else "-",
            statistics.median(r.packets / r.done for r in pings if r.done) if any(
                r.done for r in pings) else None,
            statistics.median(r.goodput_mb_s for r in bulks) if bulks else None,
            sorted({r.error for r in group if r.error})))
    rows.sort(key=lambda row: (row.loss, row.column))
    return rows


def to_json(results: Sequence[Measurement], path: Path, meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({"meta": meta, "runs": [asdict(r) for r in results],
                                "summary": [asdict(row) for row in summarise(results)]},
                               indent=1))


def plot(results: Sequence[Measurement], path: Path, cdf_loss: float | None) -> list[Path]:
    """p99 RTT vs loss (log axis), goodput vs loss, and the RTT CDF at one loss level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarise(results)
    columns = sorted({row.column for row in rows})
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 5))
    for column in columns:
        mine = [row for row in rows if row.column == column]
        with_p99 = [row for row in mine if row.p99 is not None]
        left.plot([row.loss * 100 for row in with_p99], [row.p99 for row in with_p99],
                  marker="o", label=column)
        with_goodput = [row for row in mine if row.goodput_mb_s is not None]
        middle.plot([row.loss * 100 for row in with_goodput],
                    [row.goodput_mb_s for row in with_goodput], marker="o", label=column)
    left.set(xlabel="packet loss, both directions (%)", ylabel="p99 round trip (ms)",
             yscale="log", title="ping-pong p99")
    middle.set(xlabel="packet loss, both directions (%)", ylabel="goodput (MB/s)",
               title="bulk transfer goodput", yscale="log")
    losses = sorted({r.loss for r in results})
    at = cdf_loss if cdf_loss in losses else (losses[len(losses) // 2] if losses else 0.0)
    for column in columns:
        rtts = sorted(x for r in results if r.column == column and r.loss == at
                      and r.workload == "pingpong" for x in r.rtts_ms)
        if rtts:
            right.plot(rtts, [(i + 1) / len(rtts) for i in range(len(rtts))], label=column)
    right.set(xlabel="round trip (ms)", ylabel="fraction of messages", xscale="log",
              title=f"RTT CDF at {at:.0%} loss")
    for axis in (left, middle, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]
