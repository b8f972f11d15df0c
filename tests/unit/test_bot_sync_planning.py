"""One /sync answer -> events to archive, gap and history jobs, the bot's own membership."""
from __future__ import annotations

import pytest

from mxarchiverd.sources.matrix_sync.plan import (
    GapJob, HistoryJob, MalformedSync, PlanInputs, dedupe, plan_sync,
)

BOT = "@archiver:example.org"
ALICE = "@alice:example.org"


def ev(event_id: str, type_: str = "m.room.message", **extra) -> dict:
    return {"event_id": event_id, "type": type_, "sender": ALICE, "origin_server_ts": 1, "content": {},
            **extra}


def member(event_id: str, user: str, membership: str, sender: str, previous: str | None = None,
           reason: str | None = None) -> dict:
    content = {"membership": membership, **({"reason": reason} if reason else {})}
    unsigned = {"prev_content": {"membership": previous}} if previous else {}
    return {"event_id": event_id, "type": "m.room.member", "state_key": user, "sender": sender,
            "origin_server_ts": 1, "content": content, "unsigned": unsigned}


def create(event_id: str = "$create", version: str = "11") -> dict:
    return ev(event_id, "m.room.create", state_key="", content={"room_version": version})


def joined(room: str, timeline: list, state: list | None = None, limited: bool = False,
           prev_batch: str | None = "p1") -> dict:
    body = {"timeline": {"events": timeline, "limited": limited}, "state": {"events": state or []}}
    if prev_batch:
        body["timeline"]["prev_batch"] = prev_batch
    return {room: body}


def response(join: dict | None = None, leave: dict | None = None, invite: dict | None = None) -> dict:
    return {"next_batch": "s2", "rooms": {"join": join or {}, "leave": leave or {}, "invite": invite or {}}}


def inputs(since: str | None = "s1", known=("!r",), backfill: bool = False) -> PlanInputs:
    return PlanInputs(since, BOT, frozenset(known), lambda room: backfill)


def test_state_then_timeline_each_event_once() -> None:
    name = ev("$1", "m.room.name", state_key="")
    plan = plan_sync(response(joined("!r", [ev("$2"), ev("$3"), ev("$2")], state=[name, ev("$3")])), inputs())
    room = plan.room("!r")
    assert [e["event_id"] for e in room.events] == ["$1", "$3", "$2"]
    assert plan.next_batch == "s2" and plan.since == "s1" and not plan.first_sync
    assert (room.gap, room.history, room.new) == (None, None, False)


def test_limited_timeline_of_a_known_room_is_a_gap_back_to_since() -> None:
    room = plan_sync(response(joined("!r", [ev("$9")], limited=True, prev_batch="p9")), inputs()).room("!r")
    assert room.limited and room.gap == GapJob("!r", "p9", "s1") and room.history is None


def test_limited_without_prev_batch_is_a_problem_not_a_job() -> None:
    room = plan_sync(response(joined("!r", [ev("$9")], limited=True, prev_batch=None)), inputs()).room("!r")
    assert room.gap is None and "without prev_batch" in room.problems[0]


@pytest.mark.parametrize("since, known, backfill, limited, gap, history", [
    (None, (), True, True, None, HistoryJob("!r", "p1")),      # first sync, backfill: history
    (None, (), False, True, None, None),                       # first sync, no backfill: from now on
    ("s1", (), True, False, None, HistoryJob("!r", "p1")),     # newly joined: history even unlimited
    ("s1", (), False, True, GapJob("!r", "p1", "s1"), None),   # newly joined, no backfill: the gap only
    ("s1", ("!r",), True, True, GapJob("!r", "p1", "s1"), None),  # known room: never history again
])
def test_history_only_for_new_rooms_with_backfill(since, known, backfill, limited, gap, history) -> None:
    room = plan_sync(response(joined("!r", [ev("$1")], limited=limited)),
                     inputs(since, known, backfill)).room("!r")
    assert (room.gap, room.history) == (gap, history)
    assert room.new is (since is None or "!r" not in known)


def test_creation_in_the_timeline_means_the_sync_holds_all_history() -> None:
    room = plan_sync(response(joined("!r", [create(version="10"), ev("$1")])),
                     inputs(None, (), True)).room("!r")
    assert room.history is None and room.history_complete and room.room_version == "10"


def test_creation_only_in_the_state_block_is_not_all_history() -> None:
    room = plan_sync(response(joined("!r", [ev("$1")], state=[create()])), inputs("s1", (), True)).room("!r")
    assert room.history == HistoryJob("!r", "p1") and not room.history_complete
    assert room.room_version == "11"


def test_kick_leave_ban_and_invite_of_the_bot() -> None:
    plan = plan_sync(response(
        leave={
            "!kicked": {"timeline": {"events": [ev("$a"), member("$k", BOT, "leave", ALICE, "join",
                                                                 "User is not in remote chat")]}},
            "!banned": {"timeline": {"events": [member("$b", BOT, "ban", ALICE, "join", "spam")]}},
            "!left": {"timeline": {"events": [member("$l", BOT, "leave", BOT, "join")]}},
            "!silent": {},
        },
        invite={"!inv": {"invite_state": {"events": [
            {"type": "m.room.name", "state_key": "", "sender": ALICE, "content": {"name": "Family"}},
            {"type": "m.room.member", "state_key": BOT, "sender": ALICE,
             "content": {"membership": "invite", "reason": "archive this", "is_direct": True}}]}}},
    ), inputs(known=("!kicked", "!banned", "!left", "!silent")))
    kinds = {(c.room_id, c.kind, c.sender, c.reason) for c in plan.memberships}
    assert kinds == {("!kicked", "kicked", ALICE, "User is not in remote chat"),
                     ("!banned", "banned", ALICE, "spam"), ("!left", "left", BOT, None),
                     ("!silent", "kicked", None, None)}
    assert all(c.loses_access for c in plan.memberships)
    silent = next(c for c in plan.memberships if c.room_id == "!silent")
    assert silent.event_id is None  # under rooms.leave with no event shown: still access lost
    assert [e["event_id"] for e in plan.room("!kicked").events] == ["$a", "$k"]
    (invite,) = plan.invites
    assert (invite.room_id, invite.inviter, invite.reason, invite.room_name, invite.is_direct) == (
        "!inv", ALICE, "archive this", "Family", True)


def test_left_rooms_still_get_their_gap_closed() -> None:
    plan = plan_sync(response(leave={"!r": {"timeline": {"events": [member("$k", BOT, "leave", ALICE, "join")],
                                                         "limited": True, "prev_batch": "p5"}}}), inputs())
    assert plan.room("!r").gap == GapJob("!r", "p5", "s1")


def test_state_block_membership_counts_only_when_the_timeline_has_none() -> None:
    old_join = member("$j0", BOT, "join", BOT, "invite")
    plan = plan_sync(response(joined("!r", [member("$k", BOT, "leave", ALICE, "join"),
                                            member("$i", BOT, "invite", ALICE, "leave"),
                                            member("$j1", BOT, "join", BOT, "invite")], state=[old_join])),
                     inputs())
    assert [c.event_id for c in plan.memberships] == ["$k", "$i", "$j1"]
    plan = plan_sync(response(joined("!r", [ev("$m")], state=[member("$j1", BOT, "join", BOT, "invite")])),
                     inputs())
    assert [c.event_id for c in plan.memberships] == ["$j1"]


def test_other_members_are_not_the_bots_membership() -> None:
    plan = plan_sync(response(joined("!r", [member("$x", ALICE, "leave", BOT, "join")])), inputs())
    assert plan.memberships == ()


@pytest.mark.parametrize("body, message", [
    ([], "not an object"), ({}, "next_batch"), ({"next_batch": 5}, "next_batch"),
    ({"next_batch": ""}, "next_batch"),
])
def test_a_sync_without_a_cursor_is_malformed(body, message) -> None:
    with pytest.raises(MalformedSync, match=message):
        plan_sync(body, inputs())


def test_odd_shapes_are_problems_not_crashes() -> None:
    plan = plan_sync({"next_batch": "s2", "rooms": {
        "join": {"!a": {"timeline": {"events": "nope"}, "state": []}, "!b": "junk", "": {}},
        "leave": [], "invite": {"!c": {"invite_state": {"events": [None, 3]}}}}}, inputs())
    assert {r.room_id for r in plan.rooms} == {"!a", "!b"}
    assert any("timeline.events" in p for p in plan.room("!a").problems)
    assert any("state is list" in p for p in plan.room("!a").problems)
    assert any("leave is list" in p for p in plan.problems)
    assert plan.invites[0].inviter is None
    assert plan_sync({"next_batch": "s", "rooms": "x"}, inputs()).problems


def test_dedupe_keeps_first_and_passes_unkeyed() -> None:
    assert list(dedupe([{"event_id": "$1", "n": 1}, {"x": 1}, {"event_id": "$1", "n": 2}, "s"])) == [
        {"event_id": "$1", "n": 1}, {"x": 1}, "s"]
