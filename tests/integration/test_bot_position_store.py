"""Bot mode's durable position (archive/sync_state.py) on a real archive database.

What a /sync or a /messages page taught is stored in the batch's transaction,
replaying it has the effect of once, and a finished job leaves the room's
history and holes in the state the page said.
"""
from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from mxarchiverd.archive.cursors import store_cursor
from mxarchiverd.archive.sync_state import (
    load_memberships, load_pending_jobs, load_sync_token, load_unfilled_holes,
)
from mxarchiverd.archive.migrations import migrate
from mxarchiverd.pipeline.cursors import HoleBounds, Membership, PageCursor, Pagination, SyncCursor

ROOM, OTHER = "!room:bot.test", "!other:bot.test"
KICK = HoleBounds(OTHER, "kicked", "@bridge:bot.test", "User is not in remote chat", "$kick", 1000)


@pytest.fixture
def archive(fresh_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
        yield conn


def commit(conn: psycopg.Connection, cursor: object) -> None:
    with conn.transaction():
        store_cursor(conn, cursor)  # type: ignore[arg-type]


def first_sync() -> SyncCursor:
    history = Pagination("h1", ROOM, "history", "p1")
    return SyncCursor("@bot:bot.test", "s1", rooms=(ROOM,), jobs=(history,), holes=(KICK,),
                      memberships=(Membership(ROOM, "join"), Membership(OTHER, "leave", KICK.reason, KICK.by_user,
                                                                        KICK.after_ts)))


def test_a_sync_stores_its_token_jobs_holes_and_memberships_once(archive: psycopg.Connection) -> None:
    commit(archive, first_sync())
    commit(archive, first_sync())  # a replay after a crash between commit and acknowledgement
    assert load_sync_token(archive, "@bot:bot.test") == "s1" and load_sync_token(archive, "@other:x") is None
    assert [p.job for p in load_pending_jobs(archive)] == [Pagination("h1", ROOM, "history", "p1")]
    assert load_unfilled_holes(archive) == [KICK]
    assert load_memberships(archive) == {ROOM: "join", OTHER: "leave"}
    row = archive.execute("SELECT bot_membership_reason, bot_membership_by FROM monitored_rooms WHERE room_id = %s",
                          (OTHER,)).fetchone()
    assert row == ("User is not in remote chat", "@bridge:bot.test")


def test_a_rejoin_closes_the_hole_and_its_job_fills_it(archive: psycopg.Connection) -> None:
    commit(archive, first_sync())
    closed = HoleBounds(**{**KICK.__dict__, "before_event_id": "$join", "before_ts": 2000})
    fill = Pagination("f1", OTHER, "hole", "p9", stop_event_ids=("$kick",), hole_after_event_id="$kick")
    commit(archive, SyncCursor("@bot:bot.test", "s2", holes=(closed,), jobs=(fill,),
                               memberships=(Membership(OTHER, "join"),)))
    assert archive.execute("SELECT state, before_event_id FROM room_holes").fetchall() == [("closed", "$join")]
    commit(archive, PageCursor("f1", OTHER, "p8", False, events_seen=4))
    commit(archive, PageCursor("f1", OTHER, None, True, events_seen=2, outcome="stop_event", hole_state="filled"))
    commit(archive, PageCursor("f1", OTHER, None, True, events_seen=2, outcome="stop_event", hole_state="filled"))
    assert archive.execute("SELECT state, filled_by FROM room_holes").fetchall() == [("filled", "bot")]
    assert archive.execute("SELECT state, events_seen, outcome FROM room_pagination WHERE id = 'f1'").fetchone() == (
        "done", 6, "stop_event")
    assert load_unfilled_holes(archive) == []


def test_a_finished_history_records_completeness_or_the_lower_bound(archive: psycopg.Connection) -> None:
    commit(archive, first_sync())
    commit(archive, PageCursor("h1", ROOM, None, True, events_seen=3, outcome="end", create_seen=True,
                               restricted_by="$vis", lowest_event_id="$oldest", lowest_ts=5,
                               history_complete=False))
    row = archive.execute("SELECT history_complete, history_lower_bound_event, history_lower_bound_ts "
                          "FROM monitored_rooms WHERE room_id = %s", (ROOM,)).fetchone()
    assert row == (False, "$oldest", 5)


def test_a_hole_the_bot_cannot_page_is_handed_to_the_admin_api(archive: psycopg.Connection) -> None:
    commit(archive, first_sync())
    fill = Pagination("f1", OTHER, "hole", "p9", stop_event_ids=("$kick",), hole_after_event_id="$kick")
    commit(archive, SyncCursor("@bot:bot.test", "s2", jobs=(fill,)))
    admin = Pagination("f2", OTHER, "hole", None, stop_event_ids=("$kick",), via_admin_api=True,
                       hole_after_event_id="$kick")
    commit(archive, PageCursor("f1", OTHER, None, True, outcome="end", then=admin))
    assert [p.job for p in load_pending_jobs(archive) if p.job.room_id == OTHER] == [admin]
    commit(archive, PageCursor("f2", OTHER, None, True, outcome="stop_event", hole_state="filled"))
    assert archive.execute("SELECT state, filled_by FROM room_holes").fetchall() == [("filled", "admin api")]
