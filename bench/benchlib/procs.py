"""How the benchmarks clean up; /proc readings (RSS, PSS, CPU).

Every process a benchmark starts is registered with Cleanup and ended by its PID
(and the PIDs of its descendants, found through /proc: tests/support/processes.py),
never by name.
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from tests.support.processes import cmdline, tree

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Cleanup:
    """A LIFO stack of clean-up steps that also runs on SIGTERM/SIGINT/SIGHUP."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def callback(self, func: Callable[[], None], *, label: str) -> None:
        self.steps.append((label, func))

    def __enter__(self) -> Cleanup:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_exit)
        return self

    def __exit__(self, *exc: object) -> None:
        # A second ctrl-C must not leave databases or processes behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self.steps:
                label, func = self.steps.pop()
                try:
                    func()
                except Exception as error:  # noqa: BLE001 - keep cleaning up
                    print(f"bench: clean-up step '{label}' failed: {error}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@dataclass(frozen=True)
class Memory:
    rss_kb: int
    pss_kb: int


def memory(pid: int) -> Memory | None:
    """Rss and Pss of one process from /proc/<pid>/smaps_rollup (kB)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:"):
            values[parts[0]] = int(parts[1])
    return Memory(values.get("Rss:", 0), values.get("Pss:", 0))


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (seconds)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """CPU time of a live process tree, including its reaped descendants (cutime/cstime)."""
    total = 0.0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    return total


def role_of(pid: int) -> str:
    """`mxarchiverd: poller` -> poller; multiprocessing helpers by their module."""
    line = cmdline(pid)
    if line.startswith("mxarchiverd: "):
        return line.split(": ", 1)[1].split()[0]
    if "forkserver" in line:
        return "forkserver"
    if "resource_tracker" in line:
        return "resource_tracker"
    if "postgres" in line:
        return "postgres"
    return line[:40] or str(pid)


def cpu_by_role(pids: list[int]) -> dict[str, float]:
    found: dict[str, float] = {}
    for pid in pids:
        seconds = cpu_seconds(pid)
        if seconds is not None:
            role = role_of(pid)
            found[role] = found.get(role, 0.0) + seconds
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK
