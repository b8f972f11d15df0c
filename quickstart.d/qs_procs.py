"""Processes the quickstart starts: identity by PID and start time, stopping, ports.

A PID alone is not an identity: after a reboot or a long pause another program
may hold it. The quickstart records each PID with the start time the kernel gave
it (/proc/<pid>/stat field 22) and only ever signals a PID whose start time
still matches. This also survives setproctitle, which rewrites the command line.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
POLL_S = 0.1
# Exit codes of our own children, collected when they are reaped: pid -> code.
EXIT_CODES: dict[int, int] = {}


class QuickstartError(Exception):
    """A problem the user can fix; main() prints it without a traceback."""


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start_time: int

    def as_dict(self) -> dict[str, int]:
        return {"pid": self.pid, "start_time": self.start_time}


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2:].split()


def identify(pid: int) -> ProcessId | None:
    fields = _stat_fields(pid)
    return ProcessId(pid, int(fields[19])) if fields else None


def _reap(pid: int) -> None:
    # Our own children stay zombies (and "alive" in /proc) until waited for.
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if done:
        EXIT_CODES[pid] = os.waitstatus_to_exitcode(status)


def is_running(proc: ProcessId) -> bool:
    """The very process that was recorded still runs (a zombie counts as gone)."""
    _reap(proc.pid)
    fields = _stat_fields(proc.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == proc.start_time


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group, e.g. a daemon's workers that outlived it."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition()`` until true or the deadline; return whether it came true."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def terminate(proc: ProcessId, grace_s: float) -> bool:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL. True if it stopped on SIGTERM."""
    if not is_running(proc):
        return True
    _signal(proc.pid, signal.SIGTERM)
    if wait_until(lambda: not is_running(proc), grace_s):
        return True
    if is_running(proc):
        _signal(proc.pid, signal.SIGKILL)
        wait_until(lambda: not is_running(proc), 10)
    return False


def kill_group_leftovers(pgid: int, settle_s: float, grace_s: float) -> list[int]:
    """Stop what is left of a process group whose leader has exited; return their PIDs.

    Members get ``settle_s`` to exit by themselves first: a multiprocessing
    forkserver, for one, only notices that its parent is gone a moment later.
    Safe by PID: the kernel never hands out a PID that is still in use as a
    process group id, so every member found really descends from our leader.
    """
    if wait_until(lambda: not group_members(pgid), settle_s):
        return []
    leftovers = group_members(pgid)
    for pid in leftovers:
        _signal(pid, signal.SIGTERM)
    if not wait_until(lambda: not group_members(pgid), grace_s):
        for pid in group_members(pgid):
            _signal(pid, signal.SIGKILL)
        wait_until(lambda: not group_members(pgid), 10)
    return leftovers


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT from the previous run would look busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def port_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((LOOPBACK, port)) == 0


def choose_port(wanted: int, what: str, option: str) -> int:
    """``wanted`` if free (0: any free port the kernel picks); a clear error if taken."""
    if wanted == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            return sock.getsockname()[1]
    if port_in_use(wanted):
        raise QuickstartError(
            f"port {wanted} on {LOOPBACK} is already in use, so {what} cannot listen there.\n"
            f"Stop the program using it (see: ss -ltnp 'sport = :{wanted}'), choose another "
            f"port with {option} N, or leave {option} out to use any free port.")
    return wanted


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"<{path} not readable>"
