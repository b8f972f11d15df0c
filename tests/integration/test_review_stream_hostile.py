"""Review: the stream must neither stall on hostile values nor miss de-outliered events.

Invariant 4 (DESIGN.md §3): one bad event never stalls the stream. The values used
here are ones Synapse stores as they come: canonical JSON (room v6+) allows any
integer in [-(2**53)+1, 2**53-1], so origin_server_ts may be far in the past, and
room versions 1-5 have no integer limit at all.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import insert_event, open_source, set_position, text

pytestmark = pytest.mark.synapse
ROOM = "!review-hostile:synth.test"
OLD_ROOM = "!review-v5:synth.test"
ALICE = "@alice:synth.test"
# About 7500 BC: a valid canonical-JSON integer, below PostgreSQL's timestamptz range (4713 BC).
ANCIENT_TS = -300_000_000_000_000


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {ROOM: "10", OLD_ROOM: "5"}) as conn:
        yield conn



def run_and_expect(p, source: psycopg.Connection, fresh_db: str, event_id: str) -> None:
    p.run_until_caught_up(timeout_s=30)
    assert event_id in archived(fresh_db), "the stream stopped before a later, ordinary event"


def test_redaction_with_an_ancient_origin_server_ts_does_not_stall_the_stream(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    target, _ = insert_event(source, ROOM, "m.room.message", text("hello"), sender=ALICE)
    insert_event(source, ROOM, "m.room.redaction", {}, sender=ALICE, ts=ANCIENT_TS, top_level={"redacts": target})
    after, position = insert_event(source, ROOM, "m.room.message", text("after"), sender=ALICE)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        run_and_expect(p, source, fresh_db, after)
    assert archived(fresh_db)[target]["redacted"] is True


def test_edit_with_an_ancient_origin_server_ts_does_not_stall_the_stream(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    target, _ = insert_event(source, ROOM, "m.room.message", text("v1"), sender=ALICE)
    insert_event(source, ROOM, "m.room.message", {
        "msgtype": "m.text", "body": "* v2", "m.new_content": text("v2"),
        "m.relates_to": {"rel_type": "m.replace", "event_id": target}}, sender=ALICE, ts=ANCIENT_TS)
    after, position = insert_event(source, ROOM, "m.room.message", text("after"), sender=ALICE)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        run_and_expect(p, source, fresh_db, after)


def test_media_with_a_huge_declared_size_does_not_stall_the_stream(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    insert_event(source, OLD_ROOM, "m.room.message", {
        "msgtype": "m.image", "body": "x.png", "url": "mxc://synth.test/AbCdEfGhIjKlMnOpQrStUvWx",
        "info": {"mimetype": "image/png", "size": 10_000_000_000_000_000_000}}, sender=ALICE)
    after, position = insert_event(source, OLD_ROOM, "m.room.message", text("after"), sender=ALICE)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        run_and_expect(p, source, fresh_db, after)


def test_messages_view_stays_readable_with_an_ancient_timestamp(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    insert_event(source, ROOM, "m.room.message", text("from the stone age"), sender=ALICE, ts=ANCIENT_TS)
    normal, position = insert_event(source, ROOM, "m.room.message", text("today"), sender=ALICE)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up(timeout_s=30)
    assert normal in archived(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute("SELECT event_id, timestamp FROM messages WHERE room_id = %s", (ROOM,)).fetchall()
    assert len(rows) == 2


def test_event_de_outliered_by_federation_backfill_is_archived(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    # Fetched earlier as an outlier (e.g. a missing prev event), with a positive ordering.
    outlier, old_ordering = insert_event(source, ROOM, "m.room.message", text("was an outlier"), outlier=True)
    live, position = insert_event(source, ROOM, "m.room.message", text("live"))
    set_position(source, position)
    set_position(source, -1, stream="backfill")
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up(timeout_s=30)
        assert live in archived(fresh_db) and outlier not in archived(fresh_db)
        # A /backfill batch persists it again with state: _update_outliers_txn flips
        # outlier in place and writes ex_outlier_stream with the batch's own stream
        # ordering, which for backfill is negative (events_backfill_stream_seq).
        backfilled, _ = insert_event(source, ROOM, "m.room.message", text("backfilled"), stream_ordering=-2)
        source.execute("UPDATE events SET outlier = false WHERE event_id = %s", (outlier,))
        source.execute("INSERT INTO ex_outlier_stream (event_stream_ordering, event_id, state_group, instance_name)"
                       " VALUES (-3, %s, 1, 'master')", (outlier,))
        set_position(source, -3, stream="backfill")
        # Live traffic goes on too.
        later, position = insert_event(source, ROOM, "m.room.message", text("later"))
        set_position(source, position)
        p.run_until_caught_up(timeout_s=30)
        for _ in range(4):
            p.round()
    rows = archived(fresh_db)
    assert {backfilled, later} <= set(rows), "control: both streams did run"
    assert outlier in rows and rows[outlier]["stream_ordering"] == old_ordering
