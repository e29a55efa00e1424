"""dnsperf (a load generator no one here wrote) at a bounded rate against our server, on
every backend: every query answered, none lost, with up to 1000 outstanding."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.dns.helpers import ServedDns
from tests.tools import require_tool

QUERIES = """\
example.com A
www.example.com A
example.com MX
example.com AAAA
_sip._tcp.example.com SRV
1.2.0.192.in-addr.arpa PTR
example.com CAA
quoted.example.com TXT
foo.wild.example.com A
nope.example.com A
mail.example.com TXT
sub.example.com A
example.org A
example.net A
"""


def test_dnsperf_bounded_rate_loses_nothing(served: ServedDns, tmp_path: Path) -> None:
    program = require_tool("dnsperf", "dnsperf")
    data = tmp_path / "queries.txt"
    data.write_text(QUERIES)
    result = subprocess.run(
        [program, "-s", "127.0.0.1", "-p", str(served.port), "-d", str(data), "-l", "2",
         "-Q", "4000", "-q", "1000", "-c", "4", "-t", "5"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    sent = re.search(r"Queries sent:\s+(\d+)", result.stdout)
    completed = re.search(r"Queries completed:\s+(\d+)", result.stdout)
    lost = re.search(r"Queries lost:\s+(\d+)", result.stdout)
    assert sent and completed and lost, result.stdout
    assert int(sent.group(1)) >= 4000, result.stdout  # about 2 s at 4000/s actually ran
    assert int(lost.group(1)) == 0, result.stdout
    assert int(completed.group(1)) == int(sent.group(1))
    assert "SERVFAIL" not in result.stdout and "FORMERR" not in result.stdout
