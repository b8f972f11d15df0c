"""Progress of long one-shot work (verify, repair, backfill, media retry, key import).

On a terminal: a tqdm bar with count, rate and ETA, redrawn in place. Without one
(systemd, cron, a pipe, CI): a log line every `interval` seconds and one at the
end, so a journal shows that the work moves without being flooded by redraws.
The lines are built by describe(), which is pure and unit-tested.

    with progress("backfill !room:example.org", total=len(todo), unit="event") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

log = logging.getLogger("mxarchiverd.progress")

# Without a terminal, one line this often at most (besides the first and the last).
LOG_INTERVAL = 10.0


def describe(what: str, done: int, total: int | None, elapsed: float, unit: str) -> str:
    """One progress line: count (of total, with percent), rate and ETA when they are known."""
    units = _plural(unit, done if total is None else total)
    count = f"{done}/{total} {units} ({_percent(done, total)})" if total is not None else f"{done} {units}"
    parts = [f"{what}: {count}"]
    if elapsed > 0 and done > 0:
        rate = done / elapsed
        parts.append(f"{_rate(rate)} {_plural(unit, 2)}/s")
        if total is not None and total > done:
            parts.append(f"ETA {format_seconds((total - done) / rate)}")
    parts.append(f"elapsed {format_seconds(elapsed)}")
    return ", ".join(parts)


def _percent(done: int, total: int | None) -> str:
    if not total:
        return "100%"
    return f"{min(100.0, 100.0 * done / total):.0f}%"


def _rate(rate: float) -> str:
    return f"{rate:.1f}" if rate < 10 else f"{rate:.0f}"


def _plural(unit: str, count: int) -> str:
    return unit if count == 1 or unit.endswith("s") else f"{unit}s"


def format_seconds(seconds: float) -> str:
    """3s, 2m05s, 1h02m: short enough for a log line, exact enough for an ETA."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def terminal_width(stream: IO[str], fallback: int = 100) -> int:
    """The terminal's columns; a terminal that reports none (a fresh pty) gets `fallback`."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or fallback


class Progress:
    """A bar on a terminal, periodic log lines elsewhere; use as a context manager."""

    def __init__(self, what: str, total: int | None = None, unit: str = "item", *,
                 stream: IO[str] | None = None, interval: float = LOG_INTERVAL,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.done = 0
        self.clock, self.interval = clock, interval
        self.started = clock()
        self.next_line = self.started + interval
        self.closed = False
        stream = stream if stream is not None else sys.stderr
        self.bar: Any = None
        if terminal if terminal is not None else is_terminal(stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=unit, unit_scale=unit == "B", file=stream,
                            ncols=terminal_width(stream), leave=True)
        else:
            log.info("%s", describe(what, 0, total, 0.0, unit))

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = self.clock()
        finished = self.total is not None and self.done >= self.total  # close() says it
        if now >= self.next_line and not finished:
            self.next_line = now + self.interval
            log.info("%s", describe(self.what, self.done, self.total, now - self.started, self.unit))

    def set_total(self, total: int | None) -> None:
        """The total became known (or changed) while the work runs."""
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def note(self, text: str) -> None:
        """A message that must not tear the bar (tqdm.write), or a log line."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            log.info("%s", text)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
            return
        log.info("%s", describe(self.what, self.done, self.total, self.clock() - self.started, self.unit)
                 + " (done)")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def progress(what: str, total: int | None = None, unit: str = "item", **options: Any) -> Progress:
    """A Progress for `what` (see the module's docstring)."""
    return Progress(what, total, unit, **options)
