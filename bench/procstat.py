"""What the benchmarks read about their servers from /proc: CPU used, memory, workers.

CPU time is what a busy shared machine disturbs least: the benchmarks report it beside
elapsed time.
"""

from __future__ import annotations

import os
from pathlib import Path

from broker.devstack.processes import ServerProcess


def process_cpu(pid: int) -> float:
    """CPU seconds ``pid`` has used so far (user + system); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_of(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (a gunicorn master's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def tree_cpu(server: ServerProcess) -> float:
    """CPU seconds used so far by a server and its children (gunicorn's master and workers)."""
    pid = pid_of(server)
    return sum(process_cpu(p) for p in [pid, *children_of(pid)])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
