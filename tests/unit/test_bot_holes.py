"""The bot's own membership kinds, and the holes that kicks, bans and leaves open."""
from __future__ import annotations

import pytest

from mxarchiverd.sources.matrix_sync.membership import (
    Hole, MembershipChange, fillable_by_member, track_holes,
)

BOT = "@archiver:example.org"
ALICE = "@alice:example.org"


def change(membership: str, previous: str | None, sender: str = ALICE, event_id: str = "$e",
           room: str = "!r", ts: int = 1, reason: str | None = None) -> MembershipChange:
    return MembershipChange(room, membership, previous, sender, reason, event_id, ts, BOT)


@pytest.mark.parametrize("membership, previous, sender, kind, loses, gains", [
    ("leave", "join", ALICE, "kicked", True, False),
    ("leave", None, ALICE, "kicked", True, False),
    ("leave", "join", BOT, "left", True, False),
    ("ban", "join", ALICE, "banned", True, False),
    ("ban", "leave", ALICE, "banned", False, False),      # already out: no new hole
    ("leave", "invite", ALICE, "declined", False, False),  # invite withdrawn
    ("leave", "invite", BOT, "declined", False, False),    # invite rejected
    ("leave", "knock", ALICE, "declined", False, False),
    ("join", "invite", BOT, "joined", False, True),
    ("join", "leave", BOT, "rejoined", False, True),
    ("join", "join", BOT, "joined", False, False),         # a profile change, not a join
    ("invite", "leave", ALICE, "invited", False, False),
])
def test_membership_kinds(membership, previous, sender, kind, loses, gains) -> None:
    c = change(membership, previous, sender)
    assert (c.kind, c.loses_access, c.gains_access) == (kind, loses, gains)


def test_a_kick_opens_a_hole_and_the_rejoin_closes_it() -> None:
    kick = change("leave", "join", event_id="$kick", ts=10, reason="User is not in remote chat")
    first = track_holes({}, [kick])
    (hole,) = first.opened
    assert hole == Hole("!r", "kicked", ALICE, "User is not in remote chat", "$kick", 10)
    assert hole.is_open and first.open_now == {"!r": hole} and first.closed == ()
    second = track_holes(first.open_now, [change("invite", "leave", event_id="$inv", ts=20),
                                          change("join", "invite", BOT, "$join", ts=30)])
    (closed,) = second.closed
    assert (closed.after_event_id, closed.before_event_id, closed.before_ts) == ("$kick", "$join", 30)
    assert not closed.is_open and second.open_now == {} and second.opened == ()


def test_a_repeated_hole_start_hides_the_older_join_before_it() -> None:
    """A rejoined room's sync shows the old join, the kick again, then the new join."""
    open_now = track_holes({}, [change("leave", "join", event_id="$kick")]).open_now
    update = track_holes(open_now, [change("join", "invite", BOT, "$old-join"),
                                    change("leave", "join", event_id="$kick"),
                                    change("join", "invite", BOT, "$new-join")])
    assert [(h.after_event_id, h.before_event_id) for h in update.closed] == [("$kick", "$new-join")]


def test_kick_and_rejoin_in_one_batch_and_rooms_apart() -> None:
    update = track_holes({}, [change("leave", "join", event_id="$k1", room="!a"),
                              change("ban", "join", event_id="$b", room="!b"),
                              change("join", "invite", BOT, "$j1", room="!a")])
    assert [h.room_id for h in update.opened] == ["!a", "!b"]
    assert [(h.room_id, h.before_event_id) for h in update.closed] == [("!a", "$j1")]
    assert set(update.open_now) == {"!b"} and update.open_now["!b"].kind == "banned"


def test_a_second_leave_while_out_keeps_the_first_bound() -> None:
    open_now = track_holes({}, [change("leave", "join", event_id="$k1")]).open_now
    update = track_holes(open_now, [change("leave", None, event_id="$k2")])
    assert update.opened == () and update.open_now["!r"].after_event_id == "$k1"


def test_an_unseen_leave_opens_a_hole_without_a_start_event() -> None:
    update = track_holes({}, [MembershipChange("!r", "leave", None, None, None, None, None, BOT)])
    assert update.opened[0].after_event_id is None and update.opened[0].kind == "kicked"


@pytest.mark.parametrize("visibility, fillable", [
    ("shared", True), ("world_readable", True), (None, True), ("joined", False), ("invited", False),
])
def test_who_can_fill_a_hole(visibility, fillable) -> None:
    assert fillable_by_member(visibility) is fillable
