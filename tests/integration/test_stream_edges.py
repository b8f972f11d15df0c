"""Edge cases of Synapse's event stream, written into Synapse's real schema."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import insert_event, insert_redaction, next_ordering, open_source, set_position, text

ROOM = "!edges:synth.test"


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {ROOM: "10"}) as conn:
        yield conn



def test_later_committed_lower_ordering_is_archived_not_skipped(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    first, _ = insert_event(source, ROOM, "m.room.message", text("before"))
    set_position(source, _)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up()
        # Two persisters allocate 1001-style ids in order but commit in reverse.
        low, high = next_ordering(source), next_ordering(source)
        slow = psycopg.connect(synapse_schema_db)
        slow_id, _ = insert_event(slow, ROOM, "m.room.message", text("slow, lower id"), stream_ordering=low)
        fast_id, _ = insert_event(source, ROOM, "m.room.message", text("fast, higher id"), stream_ordering=high)
        # Synapse records only the position below which everything finished: low - 1.
        set_position(source, low - 1)
        p.run_until_caught_up()
        assert fast_id not in archived(fresh_db) and p.follower.cursors["events"] == low - 1
        slow.commit()
        slow.close()
        set_position(source, high)
        p.run_until_caught_up()
    assert {first, slow_id, fast_id} <= set(archived(fresh_db))


def test_negative_orderings_follow_their_own_cursor_down(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    live, position = insert_event(source, ROOM, "m.room.message", text("live"))
    set_position(source, position)
    old = [insert_event(source, ROOM, "m.room.message", text(f"backfilled {i}"), stream_ordering=-i)[0]
           for i in range(1, 8)]
    set_position(source, -7, stream="backfill")
    config = write_config(tmp_path, synapse_schema_db, fresh_db, "processing:\n  batch_size: 3\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
        for _ in range(5):
            p.round()
        rows = archived(fresh_db)
        assert set(old) | {live} <= set(rows)
        with psycopg.connect(fresh_db) as conn:
            assert conn.execute("SELECT position FROM archive_cursors WHERE stream = 'backfill'").fetchone() == (-7,)
        # More federation backfill later continues below the cursor.
        older, _ = insert_event(source, ROOM, "m.room.message", text("older"), stream_ordering=-8)
        set_position(source, -8, stream="backfill")
        p.round()
    assert older in archived(fresh_db)


def test_de_outliered_event_is_archived_through_ex_outlier_stream(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    outlier, old_ordering = insert_event(source, ROOM, "m.room.message", text("was an outlier"), outlier=True)
    live, position = insert_event(source, ROOM, "m.room.message", text("live"))
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up()
        assert outlier not in archived(fresh_db) and live in archived(fresh_db)
        # Synapse de-outliers in place: the old ordering stays, a new id goes to ex_outlier_stream.
        new_position = next_ordering(source)
        source.execute("UPDATE events SET outlier = false WHERE event_id = %s", (outlier,))
        source.execute("INSERT INTO ex_outlier_stream (event_stream_ordering, event_id, state_group, instance_name)"
                       " VALUES (%s, %s, 1, 'master')", (new_position, outlier))
        set_position(source, new_position)
        p.run_until_caught_up()
    assert archived(fresh_db)[outlier]["stream_ordering"] == old_ordering


def test_rejected_soft_failed_and_outlier_events_are_left_out(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    rejected, _ = insert_event(source, ROOM, "m.room.message", text("rejected"), rejected="auth_error")
    soft, _ = insert_event(source, ROOM, "m.room.message", text("soft failed"), soft_failed=True)
    outlier, _ = insert_event(source, ROOM, "m.room.member", {"membership": "join"}, outlier=True, state_key="@x:y")
    kept, position = insert_event(source, ROOM, "m.room.message", text("kept"))
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert kept in rows and not {rejected, soft, outlier} & set(rows)


def test_nul_escapes_huge_bodies_and_broken_json_never_stall_the_stream(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    nul, _ = insert_event(source, ROOM, "m.room.message", text("before\u0000after"))
    huge_body = "x" * (1024 * 1024)
    huge, _ = insert_event(source, ROOM, "m.room.message", text(huge_body))
    broken, _ = insert_event(source, ROOM, "m.room.message", None, json_text='{"type": "m.room.message", "content": {')
    wrong_types, _ = insert_event(source, ROOM, "m.room.message",
                                  {"msgtype": 5, "body": ["x"], "m.relates_to": "nope", "url": 7})
    after, position = insert_event(source, ROOM, "m.room.message", text("after the bad ones"))
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert after in rows
    assert rows[nul]["event"] is None and "\\u0000" in rows[nul]["event_raw"]
    assert rows[nul]["content"]["body"] == "before\ufffdafter" and "\\u0000" in rows[nul]["archive_problem"]
    assert rows[huge]["content"]["body"] == huge_body
    assert rows[broken]["event_raw"].startswith('{"type"') and rows[broken]["archive_problem"].startswith("invalid JSON")
    assert rows[wrong_types]["message_type"] == "m.unknown" and rows[wrong_types]["relation_type"] is None
    with psycopg.connect(fresh_db) as conn:
        held = conn.execute("SELECT event_id, reason FROM quarantined_events").fetchall()
    assert [event_id for event_id, _ in held] == [broken]


def test_edit_before_its_original_and_redaction_before_its_target(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    original_id, redacted_id = "$orig-late", "$target-late"
    edit, _ = insert_event(source, ROOM, "m.room.message", {
        "msgtype": "m.text", "body": "* fixed", "m.new_content": {"msgtype": "m.text", "body": "fixed"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_id}}, ts=2_000)
    redaction, position = insert_redaction(source, ROOM, redacted_id, reason="spam",
                                           sender="@mod:synth.test", ts=3_000)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up()
        assert archived(fresh_db)[edit]["relates_to_event_id"] == original_id
        insert_event(source, ROOM, "m.room.message", text("tpyo"), event_id=original_id, ts=1_000)
        _, position = insert_event(source, ROOM, "m.room.message", text("spam"), event_id=redacted_id, ts=1_500)
        set_position(source, position)
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert rows[original_id]["content"]["body"] == "fixed" and rows[original_id]["edited_at"] is not None
    assert rows[redacted_id]["redacted"] is True and rows[redacted_id]["redaction_reason"] == "spam"
    assert rows[redacted_id]["redacted_by"] == "@mod:synth.test" and rows[redacted_id]["redaction_event_id"] == redaction


def test_room_version_10_redacts_at_top_level(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    target, _ = insert_event(source, ROOM, "m.room.message", text("old layout"))
    _, position = insert_event(source, ROOM, "m.room.redaction", {}, top_level={"redacts": target})
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up()
    assert archived(fresh_db)[target]["redacted"] is True


def test_purge_policy_clears_content_of_redacted_message_and_its_edits(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    target, _ = insert_event(source, ROOM, "m.room.message", text("secret"))
    edit, _ = insert_event(source, ROOM, "m.room.message", {
        "msgtype": "m.text", "body": "* secret2", "m.new_content": {"msgtype": "m.text", "body": "secret2"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target}})
    _, position = insert_redaction(source, ROOM, target)
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, "processing:\n  redaction_policy: purge\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert rows[target]["redacted"] and rows[target]["content"] == {} and rows[target]["event"]["content"] == {}
    assert rows[edit]["content"] == {}


def test_a_gap_wider_than_one_read_window_is_crossed_in_several_reads(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    first, _ = insert_event(source, ROOM, "m.room.message", text("before the gap"))
    source.execute("SELECT setval('events_stream_seq', 250000)")
    far, position = insert_event(source, ROOM, "m.room.message", text("after the gap"))
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db, f"rooms:\n  - room_id: '{ROOM}'\n")) as p:
        moved, rounds = 0, 0
        while p.follower.cursors["events"] < position:
            moved += p.round()
            rounds += 1
    assert rounds >= 3 and moved == 2 and {first, far} <= set(archived(fresh_db))
