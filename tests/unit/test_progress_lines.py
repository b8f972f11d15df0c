"""Progress of one-shot work: the line a journal shows, and the bar a terminal shows."""
from __future__ import annotations

import io
import logging

import pytest

from mxarchiverd.progress import Progress, describe, format_seconds


def test_a_line_has_count_percent_rate_and_eta() -> None:
    line = describe("backfill !r:x", 250, 1000, 10.0, "event")
    assert line == "backfill !r:x: 250/1000 events (25%), 25 events/s, ETA 30s, elapsed 10s"


def test_without_a_total_the_line_has_count_and_rate_only() -> None:
    assert describe("verify", 3, None, 2.0, "room") == "verify: 3 rooms, 1.5 rooms/s, elapsed 2s"


def test_nothing_done_yet_has_no_rate() -> None:
    assert describe("verify", 0, 5, 0.0, "room") == "verify: 0/5 rooms (0%), elapsed 0s"


@pytest.mark.parametrize(("seconds", "shown"), [(0.4, "0s"), (59, "59s"), (125, "2m05s"), (3725, "1h02m"),
                                                (float("inf"), "?")])
def test_durations_are_short(seconds: float, shown: str) -> None:
    assert format_seconds(seconds) == shown


def test_without_a_terminal_it_logs_first_periodic_and_last_lines(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    caplog.set_level(logging.INFO, logger="mxarchiverd.progress")
    with Progress("work", 10, "item", terminal=False, interval=5.0, clock=lambda: now[0]) as bar:
        for _ in range(10):
            now[0] += 1.0
            bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["work: 0/10 items (0%), elapsed 0s",
                     "work: 5/10 items (50%), 1.0 items/s, ETA 5s, elapsed 5s",
                     "work: 10/10 items (100%), 1.0 items/s, elapsed 10s (done)"]


def test_on_a_terminal_it_draws_a_bar_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    screen = io.StringIO()
    caplog.set_level(logging.INFO, logger="mxarchiverd.progress")
    with Progress("work", 4, "item", stream=screen, terminal=True) as bar:
        bar.update(4)
    assert "4/4" in screen.getvalue() and "work" in screen.getvalue()
    assert caplog.records == []
