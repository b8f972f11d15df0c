"""Review: the room registry (monitored_rooms) must not silently drop a room's messages.

A room with backfill: true is archived with its whole history. Whenever such a room
becomes archived again after a time in which the stream skipped it, the events of
that time must be read per room, or they are gone for good (the stream never goes
back). `mxarchiverd verify` agrees: it counts them as missing.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.verify import verify
from tests.support.bridge import add_portal
from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import insert_event, open_source, set_position

pytestmark = pytest.mark.synapse
KEPT = "!review-kept:synth.test"
TOGGLED = "!review-toggled:synth.test"
PORTAL = "!review-portal:synth.test"
CHAT = "120363099999999999@g.us"


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {room: "10" for room in (KEPT, TOGGLED, PORTAL)}) as conn:
        yield conn


def say(conn: psycopg.Connection, room: str, body: str) -> str:
    event_id, position = insert_event(conn, room, "m.room.message", {"msgtype": "m.text", "body": body})
    set_position(conn, position)
    return event_id


def rooms(*room_ids: str) -> str:
    return "rooms:\n" + "".join(f"  - room_id: '{r}'\n    backfill: true\n" for r in room_ids)


def missing(config) -> dict[str, tuple[str, ...]]:
    return {r.room_id: r.missing for r in verify(config) if r.missing}


def test_room_listed_again_gets_the_messages_of_the_gap(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    first = say(source, TOGGLED, "before")
    say(source, KEPT, "kept room")
    both = write_config(tmp_path, synapse_schema_db, fresh_db, rooms(KEPT, TOGGLED))
    with pipeline(both) as p:
        p.run_until_caught_up(timeout_s=30)
        p.reconfigure(write_config(tmp_path, synapse_schema_db, fresh_db, rooms(KEPT)))
        gap = say(source, TOGGLED, "while the room was not listed")
        say(source, KEPT, "kept room goes on")
        p.run_until_caught_up(timeout_s=30)
        both = write_config(tmp_path, synapse_schema_db, fresh_db, rooms(KEPT, TOGGLED))
        p.reconfigure(both)
        back = say(source, TOGGLED, "listed again")
        p.run_until_caught_up(timeout_s=30)
    rows = archived(fresh_db, TOGGLED)
    assert {first, back} <= set(rows), "control: the room is archived before and after"
    assert missing(both) == {}, "verify finds the archive incomplete"
    assert gap in rows


def test_room_re_enabled_by_the_operator_gets_the_messages_of_the_gap(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    say(source, TOGGLED, "before")
    config = write_config(tmp_path, synapse_schema_db, fresh_db, rooms(TOGGLED))
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
        p.follower.archive.execute("UPDATE monitored_rooms SET enabled = false WHERE room_id = %s", (TOGGLED,))
        gap = say(source, TOGGLED, "while disabled")
        p.run_until_caught_up(timeout_s=30)
        assert gap not in archived(fresh_db), "control: a disabled room is skipped"
        p.follower.archive.execute("UPDATE monitored_rooms SET enabled = true WHERE room_id = %s", (TOGGLED,))
        say(source, TOGGLED, "enabled again")
        p.run_until_caught_up(timeout_s=30)
    assert missing(config) == {}, "verify finds the archive incomplete"
    assert gap in archived(fresh_db)


def test_portal_known_from_all_rooms_mode_is_archived_after_switching_to_auto_discovery(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, bridge_db: str, tmp_path: Path) -> None:
    say(source, PORTAL, "archived in all-rooms mode")
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:  # no rooms listed: every room
        p.run_until_caught_up(timeout_s=30)
    with psycopg.connect(bridge_db, autocommit=True) as conn:
        add_portal(conn, CHAT, PORTAL, "WhatsApp group")
    # The operator narrows the config to one room plus the bridge's portals.
    config = write_config(tmp_path, synapse_schema_db, fresh_db, rooms(KEPT),
                          f"  bridge_db_url: '{bridge_db}'\n  auto_discover_bridged_rooms: true\n")
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
        kept = say(source, KEPT, "listed room")
        bridged = say(source, PORTAL, "a WhatsApp message after the switch")
        p.run_until_caught_up(timeout_s=30)
    rows = archived(fresh_db)
    assert kept in rows, "control"
    assert bridged in rows
