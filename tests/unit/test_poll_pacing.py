"""When the poller's next round comes (sources/base.py round_delay, pure)."""
from __future__ import annotations

from mxarchiverd.pipeline.cursors import StreamCursor
from mxarchiverd.pipeline.messages import EventBatch
from mxarchiverd.sources.base import ACTIVE_POLL_DIVISOR, Poll, round_delay

CURSOR = StreamCursor("events", 1)
EVENT = {"event_id": "$e"}


def test_an_idle_source_waits_the_poll_interval() -> None:
    assert round_delay(Poll(), 0.2) == 0.2
    # A read that only moved the cursor over a gap found no events.
    assert round_delay(Poll([EventBatch(CURSOR)]), 0.2) == 0.2


def test_while_events_arrive_rounds_come_more_often() -> None:
    assert round_delay(Poll([EventBatch(CURSOR, [EVENT])]), 0.2) == 0.2 / ACTIVE_POLL_DIVISOR


def test_more_waiting_means_at_once_and_the_source_may_know_better() -> None:
    assert round_delay(Poll([EventBatch(CURSOR, [EVENT])], busy=True), 0.2) == 0.0
    assert round_delay(Poll(busy=True, wait=7.0), 0.2) == 7.0
