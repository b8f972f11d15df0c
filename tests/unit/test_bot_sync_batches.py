"""What a /sync or a /messages page becomes for the pipeline (sources/matrix_sync/batches.py)."""
from __future__ import annotations

import itertools
from typing import Any

from mxarchiverd.pipeline.cursors import PageCursor, SyncCursor
from mxarchiverd.sources.matrix_sync.batches import ActiveJob, Coverage, Rules, from_page, from_sync
from mxarchiverd.sources.matrix_sync.membership import Hole
from mxarchiverd.sources.matrix_sync.paging import PageJob, read_page
from mxarchiverd.sources.matrix_sync.plan import PlanInputs, plan_sync

BOT = "@bot:x"


def event(event_id: str, type_: str = "m.room.message", sender: str = "@a:x", **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "sender": sender, "origin_server_ts": 1, "content": {"body": event_id},
            **extra}


def member(event_id: str, who: str, membership: str, sender: str, reason: str | None = None) -> dict[str, Any]:
    content = {"membership": membership, **({"reason": reason} if reason else {})}
    return event(event_id, "m.room.member", sender, state_key=who, content=content)


def rules(*, admin: bool = False, member_can_fill: bool = True, selected: set[str] | None = None) -> Rules:
    ids = (f"job{i}" for i in itertools.count())
    return Rules(selected=lambda room: selected is None or room in selected, backfill=lambda room: True,
                 room_version=lambda room, plan: "10", member_can_fill=lambda room: member_can_fill, admin=admin,
                 new_id=lambda: next(ids))


def sync(rooms: dict[str, Any], since: str | None, known: frozenset[str] = frozenset(), leave: dict[str, Any] | None = None):
    response = {"next_batch": "s2", "rooms": {"join": rooms, "leave": leave or {}}}
    return plan_sync(response, PlanInputs(since, BOT, known, lambda room: True))


def test_the_state_block_is_context_and_the_timeline_is_archived() -> None:
    plan = sync({"!r": {"state": {"events": [member("$m", "@a:x", "join", "@a:x")]},
                        "timeline": {"events": [event("$1")], "limited": True, "prev_batch": "p1"}}},
                since="s1", known=frozenset({"!r"}))
    outcome = from_sync(plan, Coverage(BOT, "s1", frozenset({"!r"}), frozenset({"!r"})), rules())
    assert [e["event_id"] for e in outcome.batch.events] == ["$1"]
    assert [e["event_id"] for e in outcome.batch.context] == ["$m"]
    cursor = outcome.batch.cursor
    assert isinstance(cursor, SyncCursor) and cursor.token == "s2" and cursor.rooms == ("!r",)
    [gap] = cursor.jobs
    assert (gap.kind, gap.from_token, gap.to_token) == ("gap", "p1", "s1")
    assert outcome.coverage.since == "s2" and [j.record for j in outcome.coverage.jobs] == [gap]


def test_a_new_room_gets_its_history_and_unselected_rooms_nothing() -> None:
    plan = sync({"!new": {"timeline": {"events": [event("$1")], "limited": True, "prev_batch": "p1"}},
                 "!other": {"timeline": {"events": [event("$2")]}}}, since="s1")
    outcome = from_sync(plan, Coverage(BOT, "s1"), rules(selected={"!new"}))
    assert [j.kind for j in outcome.batch.cursor.jobs] == ["history"]  # type: ignore[union-attr]
    assert [e["room_id"] for e in outcome.batch.events] == ["!new"]
    assert outcome.coverage.joined == {"!new"} and outcome.batch.cursor.memberships[0].membership == "join"  # type: ignore[union-attr]


def test_a_kick_opens_a_hole_once_and_a_rejoin_closes_it_with_a_job() -> None:
    kick = member("$kick", BOT, "leave", "@bridge:x", reason="User is not in remote chat")
    plan = sync({}, since="s1", leave={"!r": {"timeline": {"events": [kick]}}})
    coverage = Coverage(BOT, "s1", frozenset({"!r"}), frozenset({"!r"}))
    kicked = from_sync(plan, coverage, rules())
    assert [k.reason for k in kicked.kicks] == ["User is not in remote chat"]
    [hole] = kicked.batch.cursor.holes  # type: ignore[union-attr]
    assert (hole.after_event_id, hole.before_event_id, hole.state) == ("$kick", None, None)
    assert "!r" not in kicked.coverage.joined and "!r" in kicked.coverage.holes
    again = from_sync(plan, kicked.coverage, rules())  # the same kick shown again (a re-invite)
    assert again.kicks == () and again.batch.cursor.holes == ()  # type: ignore[union-attr]
    join = member("$join", BOT, "join", BOT)
    join["unsigned"] = {"prev_content": {"membership": "invite"}}
    back = from_sync(sync({"!r": {"timeline": {"events": [join]}}}, since="s2", known=frozenset({"!r"})),
                     kicked.coverage, rules())
    [closed] = back.batch.cursor.holes  # type: ignore[union-attr]
    assert (closed.after_event_id, closed.before_event_id) == ("$kick", "$join")
    [fill] = back.batch.cursor.jobs  # type: ignore[union-attr]
    assert (fill.kind, fill.stop_event_ids, fill.via_admin_api) == ("hole", ("$kick",), False)


def test_a_hole_nobody_can_page_is_unfillable_at_once() -> None:
    coverage = Coverage(BOT, "s2", holes={"!r": Hole("!r", "kicked", "@a:x", None, "$kick", 1)})
    join = member("$join", BOT, "join", BOT)
    back = from_sync(sync({"!r": {"timeline": {"events": [join]}}}, since="s2", known=frozenset({"!r"})),
                     coverage, rules(member_can_fill=False, admin=False))
    assert back.batch.cursor.jobs == () and back.batch.cursor.holes[0].state == "unfillable"  # type: ignore[union-attr]
    admin = from_sync(sync({"!r": {"timeline": {"events": [join]}}}, since="s2", known=frozenset({"!r"})),
                      coverage, rules(member_can_fill=False, admin=True))
    assert [j.via_admin_api for j in admin.batch.cursor.jobs] == [True]  # type: ignore[union-attr]


def hole_job(via_admin: bool = False) -> ActiveJob:
    from mxarchiverd.pipeline.cursors import Pagination

    record = Pagination("h1", "!r", "hole", None, stop_event_ids=("$kick",), via_admin_api=via_admin,
                        hole_after_event_id="$kick")
    return ActiveJob(record, PageJob("!r", None, stop_event_ids=frozenset({"$kick"})))


def test_a_hole_page_that_reaches_the_kick_fills_it() -> None:
    page = read_page(hole_job().pager, {"chunk": [event("$2"), event("$1"), event("$kick")], "end": "t9"})
    outcome = from_page(hole_job(), page, "10", rules())
    cursor = outcome.batch.cursor
    assert isinstance(cursor, PageCursor) and cursor.done and cursor.hole_state == "filled"
    assert [e["event_id"] for e in outcome.batch.events] == ["$2", "$1"] and outcome.job is None


def test_a_hole_the_bot_could_not_page_goes_to_the_admin_api_or_stays_unfillable() -> None:
    ended = read_page(hole_job().pager, {"chunk": [event("$2")]})  # no `end`, the kick not reached
    handed = from_page(hole_job(), ended, "10", rules(admin=True))
    assert handed.then is not None and handed.then.record.via_admin_api and handed.batch.cursor.hole_state is None  # type: ignore[union-attr]
    alone = from_page(hole_job(), ended, "10", rules(admin=False))
    assert alone.then is None and alone.batch.cursor.hole_state == "unfillable"  # type: ignore[union-attr]
    by_admin = from_page(hole_job(via_admin=True), ended, "10", rules(admin=True))
    assert by_admin.then is None and by_admin.batch.cursor.hole_state == "unfillable"  # type: ignore[union-attr]


def test_an_empty_page_with_an_end_goes_on() -> None:
    page = read_page(hole_job().pager, {"chunk": [], "end": "t8"})
    outcome = from_page(hole_job(), page, "10", rules())
    assert not outcome.batch.cursor.done and outcome.job is not None and outcome.job.pager.from_token == "t8"  # type: ignore[union-attr]
