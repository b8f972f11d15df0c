"""A fake systemd: the AF_UNIX datagram socket that NOTIFY_SOCKET names, and what arrived on it.

A plain module (no pytest). The daemon launcher (tests/support/daemon.py) binds
one when asked, so that tests can assert the whole sd_notify transcript.
"""
from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from tests.support.waiting import wait_for


class NotifyListener:
    """Collects (monotonic time, datagram) pairs in a thread."""

    def __init__(self, path: Path, *, owns_dir: bool = False) -> None:
        self.path = path
        # in_temp_dir() made the directory, so close() removes it again.
        self._owns_dir = owns_dir
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    @classmethod
    def in_temp_dir(cls) -> NotifyListener:
        """A listener in a short directory of its own: AF_UNIX paths are limited to 107 bytes."""
        return cls(Path(tempfile.mkdtemp(prefix="mxd-")) / "notify.sock", owns_dir=True)

    def _collect(self) -> None:
        while self._running:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def snapshot(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.messages)

    def find(self, field: str, after: int = 0) -> int | None:
        """Index of the first datagram at or after `after` that has this field line."""
        for i, (_, text) in enumerate(self.snapshot()[after:], start=after):
            if field in text.split("\n"):
                return i
        return None

    def wait_for(self, field: str, after: int = 0, timeout: float = 15.0) -> int:
        # Compare with None: index 0 is a valid answer but falsy.
        wait_for(lambda: self.find(field, after) is not None, timeout, f"{field} after datagram {after}",
                 interval_s=0.02)
        index = self.find(field, after)
        assert index is not None
        return index

    def text(self, index: int) -> str:
        return self.snapshot()[index][1]

    def statuses(self) -> list[str]:
        return [text for _, text in self.snapshot() if "STATUS=" in text]

    def watchdog_times(self) -> list[float]:
        return [t for t, text in self.snapshot() if "WATCHDOG=1" in text.split("\n")]

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self.sock.close()
        if self._owns_dir:
            shutil.rmtree(self.path.parent, ignore_errors=True)
