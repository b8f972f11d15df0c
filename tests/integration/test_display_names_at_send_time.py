"""A message is attributed to the name its sender had when it was sent.

Facts §1.9: "For the per-room name, use room_memberships.display_name of the
membership event in force". The current member state is not enough: history read
on first start (or after an outage, or per-room backfill) would get today's name,
and while the archiver follows the stream live, a rename read in a later batch
must replace the cached name.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import insert_event, open_source, set_position

pytestmark = pytest.mark.synapse
ROOM = "!names:synth.test"
ALICE = "@alice:synth.test"
TEXT = {"msgtype": "m.text", "body": "hi"}


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {ROOM: "10"}) as conn:
        yield conn


def member(conn: psycopg.Connection, user: str, displayname: str | None, membership: str = "join") -> int:
    """A membership event as Synapse persists it: events, room_memberships, current state."""
    content = {"membership": membership, **({"displayname": displayname} if displayname else {})}
    event_id, ordering = insert_event(conn, ROOM, "m.room.member", content, sender=user, state_key=user)
    conn.execute("INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership, display_name,"
                 " event_stream_ordering) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (event_id, user, user, ROOM, membership, displayname, ordering))
    conn.execute("""INSERT INTO current_state_events (event_id, room_id, type, state_key, membership,
                                                      event_stream_ordering)
                    VALUES (%s, %s, 'm.room.member', %s, %s, %s)
                    ON CONFLICT (room_id, type, state_key) DO UPDATE
                       SET event_id = EXCLUDED.event_id, membership = EXCLUDED.membership,
                           event_stream_ordering = EXCLUDED.event_stream_ordering""",
                 (event_id, ROOM, user, membership, ordering))
    return ordering


def test_message_read_later_keeps_the_name_its_sender_had_then(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    member(source, ALICE, "Alice")
    said, _ = insert_event(source, ROOM, "m.room.message", {"msgtype": "m.text", "body": "I'll pay"}, sender=ALICE)
    member(source, ALICE, "Mallory")
    set_position(source, member(source, ALICE, None, membership="leave"))
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:  # first start: reads the history
        p.run_until_caught_up(timeout_s=30)
    assert archived(fresh_db)[said]["sender_display_name"] == "Alice"


def test_a_rename_read_in_a_later_batch_replaces_the_cached_name(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    member(source, ALICE, "Alice")
    before, position = insert_event(source, ROOM, "m.room.message", TEXT, sender=ALICE)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up(timeout_s=30)  # alice's history is cached now
        renamed = member(source, ALICE, "Alice Smith")
        after, position = insert_event(source, ROOM, "m.room.message", TEXT, sender=ALICE)
        set_position(source, position)
        p.run_until_caught_up(timeout_s=30)
    rows = archived(fresh_db)
    assert rows[before]["sender_display_name"] == "Alice"
    assert rows[after]["sender_display_name"] == "Alice Smith"
    rename = next(r for r in rows.values() if r["stream_ordering"] == renamed)
    assert rename["sender_display_name"] == "Alice", "a rename is shown under the name it was sent with"
