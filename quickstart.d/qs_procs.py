"""Processes the quickstart starts (by PID and start time: tests/support/processes.py), ports, logs.

Only a PID whose recorded kernel start time still matches is ever signalled, so a
stale quickstart.json can never hit another program that reuses the PID.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from tests.support import processes
from tests.support.processes import ProcessId

LOOPBACK = "127.0.0.1"
# Exit codes of our own children, collected when they are reaped: pid -> code.
EXIT_CODES: dict[int, int] = {}


class QuickstartError(Exception):
    """A problem the user can fix; main() prints it without a traceback."""


def _reap(pid: int) -> None:
    # Our own children stay zombies until waited for.
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if done:
        EXIT_CODES[pid] = os.waitstatus_to_exitcode(status)


def is_running(proc: ProcessId) -> bool:
    """The very process that was recorded still runs; reaps it (keeping its exit code) if it was ours."""
    _reap(proc.pid)
    return processes.is_running(proc)


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
