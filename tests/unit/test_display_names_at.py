"""A message is attributed to its sender's room display name at the time it was sent."""
from __future__ import annotations

from mxarchiverd.sources.room_state import MemberHistory, history_of, name_at

# join as Alice (10), rename to Mallory (30), leave without a name (40)
ALICE = history_of([(30, "Mallory"), (10, "Alice"), (40, None)])


def test_history_is_sorted_by_stream_ordering() -> None:
    assert ALICE == MemberHistory([10, 30, 40], ["Alice", "Mallory", None])


def test_a_message_gets_the_name_in_force_when_it_was_sent() -> None:
    assert name_at(ALICE, 20) == "Alice"
    assert name_at(ALICE, 35) == "Mallory"


def test_membership_events_get_the_name_from_before_them() -> None:
    assert name_at(ALICE, 30) == "Alice", "the rename is shown under the old name"
    assert name_at(ALICE, 40) == "Mallory", "the leave is shown under the last name"


def test_an_event_before_every_membership_gets_the_earliest_name() -> None:
    assert name_at(ALICE, 10) == "Alice", "the first join is its own name"
    assert name_at(ALICE, -5000) == "Alice", "federation backfill orderings are negative"


def test_no_history_or_no_ordering() -> None:
    assert name_at(None, 20) is None
    assert name_at(history_of([]), 20) is None
    assert name_at(ALICE, None) is None, "without an ordering: the latest membership's name"
    assert name_at(history_of([(10, "Alice")]), None) == "Alice"
