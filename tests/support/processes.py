"""Processes that tests, benchmarks and the quickstart start: identity, trees, stopping by PID.

A plain module (no pytest): bench/ and quickstart.d/ import it with the project's
.venv python. Nothing here finds a process by name; every signal goes to a PID
that we started or that descends from one we started.

A PID alone is not an identity: after a reboot or a long pause another program
may hold it. :class:`ProcessId` pairs it with the start time the kernel gave the
process (/proc/<pid>/stat field 22), which also survives setproctitle rewriting
the command line.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.05
# Indexes into stat_fields(): the fields after the command name, counted from 0.
_STATE, _PPID, _PGRP, _START_TIME = 0, 1, 2, 19


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2:].split()


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start_time: int

    def as_dict(self) -> dict[str, int]:
        return {"pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> ProcessId:
        return cls(int(data["pid"]), int(data["start_time"]))


def identify(pid: int) -> ProcessId | None:
    fields = stat_fields(pid)
    return ProcessId(pid, int(fields[_START_TIME])) if fields else None


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie may wait a moment for its reaper)."""
    fields = stat_fields(pid)
    return fields is not None and fields[_STATE] != "Z"


def is_running(proc: ProcessId) -> bool:
    """The very process that was recorded still runs (a zombie counts as gone)."""
    fields = stat_fields(proc.pid)
    return fields is not None and fields[_STATE] != "Z" and int(fields[_START_TIME]) == proc.start_time


def _live_table() -> dict[int, list[str]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields and fields[_STATE] != "Z":
                table[int(entry)] = fields
    return table


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group, e.g. a daemon's workers that outlived it.

    Safe by PID: the kernel never hands out a PID that is still in use as a
    process group id, so every member found descends from the group's leader.
    """
    return sorted(pid for pid, fields in _live_table().items() if int(fields[_PGRP]) == pgid)


def tree(pid: int) -> list[int]:
    """`pid` and its live descendants, breadth first (empty if `pid` is gone)."""
    parents = {p: int(fields[_PPID]) for p, fields in _live_table().items()}
    if pid not in parents:
        return []
    found, frontier = [pid], {pid}
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier and p not in found]
        found += children
        frontier = set(children)
    return found


def wait_until(condition: Callable[[], object], timeout_s: float, interval_s: float = POLL_S) -> bool:
    """Poll ``condition()`` until true or the deadline; return whether it came true."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def send(pid: int, signum: int) -> None:
    """Signal a PID that may have exited meanwhile."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def terminate(proc: ProcessId, grace_s: float, signum: int = signal.SIGTERM) -> bool:
    """``signum``, wait up to ``grace_s``, then SIGKILL. True if it stopped without SIGKILL."""
    if not is_running(proc):
        return True
    send(proc.pid, signum)
    if wait_until(lambda: not is_running(proc), grace_s):
        return True
    if is_running(proc):
        send(proc.pid, signal.SIGKILL)
        wait_until(lambda: not is_running(proc), 10)
    return False


def kill_all(pids: list[int], timeout_s: float = 10.0) -> None:
    """SIGKILL every PID and wait until none of them runs."""
    for pid in pids:
        send(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(p) for p in pids), timeout_s)


def sweep_group(pgid: int, settle_s: float, grace_s: float) -> list[int]:
    """Stop what is left of a process group whose leader has exited; return their PIDs.

    Members get ``settle_s`` to exit by themselves first: a multiprocessing fork
    server, for one, only notices a moment later that its parent is gone.
    """
    if wait_until(lambda: not group_members(pgid), settle_s):
        return []
    leftovers = group_members(pgid)
    for pid in leftovers:
        send(pid, signal.SIGTERM)
    if not wait_until(lambda: not group_members(pgid), grace_s):
        kill_all(group_members(pgid))
    return leftovers


def cmdline(pid: int) -> str:
    """The command line as `ps` shows it (a process title after setproctitle)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()
