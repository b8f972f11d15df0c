"""sd_notify(3) for the supervisor: READY, RELOADING, STOPPING, WATCHDOG, STATUS.

A small sender of our own rather than the `sdnotify` package, because that one
reads NOTIFY_SOCKET from os.environ when constructed (we must take the variable
out of the environment before any child starts, and tests pass the address in),
connect()s once (a connected datagram socket stays broken after systemd
re-executes itself, sendto() per message does not), knows nothing of
WATCHDOG_USEC/WATCHDOG_PID, and its bare `except:` would also swallow
KeyboardInterrupt.

Only the supervisor talks to systemd (the unit has NotifyAccess=main).
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass(frozen=True)
class NotifyEnv:
    socket: str | None = None
    # Set only when the watchdog is meant for this process (sd_watchdog_enabled(3)).
    watchdog_usec: int | None = None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2 / 1_000_000


def take_notify_env(environ: MutableMapping[str, str], pid: int) -> NotifyEnv:
    """Read systemd's variables once and remove them, so that no child inherits them."""
    values = {name: environ.pop(name, None) for name in _VARIABLES}
    return NotifyEnv(values["NOTIFY_SOCKET"] or None,
                     _watchdog_usec(values["WATCHDOG_USEC"], values["WATCHDOG_PID"], pid))


def _watchdog_usec(usec: str | None, for_pid: str | None, pid: int) -> int | None:
    try:
        interval = int(usec) if usec else 0
        meant_for_us = not for_pid or int(for_pid) == pid
    except ValueError:
        return None
    return interval if interval > 0 and meant_for_us else None


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, for RELOADING=1's MONOTONIC_USEC= field."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def socket_address(name: str) -> str | None:
    """A leading '@' names Linux's abstract namespace; other non-paths are unsupported."""
    if name.startswith("@"):
        return "\0" + name[1:]
    return name if name.startswith("/") else None


def _datagram_socket() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)


class Notifier:
    """Sends notifications; a missing or broken socket only costs a debug log line."""

    def __init__(self, name: str | None, make_socket: Callable[[], socket.socket] = _datagram_socket) -> None:
        self.address = socket_address(name) if name else None
        if name and self.address is None:
            log.warning("NOTIFY_SOCKET %r is not a path or abstract socket; not notifying", name)
        self._make_socket = make_socket
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of newline-separated VAR=value fields; True if it was sent."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = self._make_socket()
            self._socket.sendto("\n".join(fields).encode(), self.address)
            return True
        except (OSError, ValueError) as exc:
            log.debug("sd_notify failed: %s", exc)
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def status_field(text: str) -> str:
    """STATUS= is one line; a newline would start a new (bogus) field."""
    return "STATUS=" + " ".join(text.split())
