"""The wakeup pipe: signals become bytes that the supervisor's loop reads.

signal.set_wakeup_fd() makes CPython's C-level handler write each signal's
number into a non-blocking pipe. The Python-level handlers do nothing (one must
be installed, or the C handler never runs); the loop, which waits on the pipe
alongside the children's sentinels, reads the bytes and dispatches. Nothing
runs in signal context, so nothing can deadlock there (logging in a handler
can; see gunicorn #3198), and a signal wakes the loop at once.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from types import FrameType

HANDLED: tuple[signal.Signals, ...] = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


def decode_signals(data: bytes) -> list[signal.Signals]:
    """Signal numbers from the pipe, in arrival order, each once (two queued SIGHUPs
    need one reload); unknown numbers are skipped."""
    found: dict[signal.Signals, None] = {}
    for number in data:
        try:
            found.setdefault(signal.Signals(number))
        except ValueError:
            continue
    return list(found)


def _record_only(signum: int, frame: FrameType | None) -> None:
    """The wakeup fd already carries the signal number to the loop."""


class WakeupPipe:
    """Install with install() from the main thread; restore with close()."""

    def __init__(self, signals: Iterable[signal.Signals] = HANDLED) -> None:
        self.signals = tuple(signals)
        self._read_fd = -1
        self._write_fd = -1
        self._previous: dict[signal.Signals, object] = {}
        self._previous_fd = -1

    def install(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        # Non-blocking both ways: the C handler must never block, nor must drain().
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, _record_only)

    def fileno(self) -> int:
        return self._read_fd

    def drain(self) -> list[signal.Signals]:
        return decode_signals(self._read_all())

    def _read_all(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(self._read_fd, 512)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self._read_fd < 0:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)
        self._read_fd = self._write_fd = -1
