"""End to end with a real Synapse: what clients sent is what the archive holds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from mxarchiverd import status
from mxarchiverd.verify import verify
from tests.support.conversation import send_conversation
from tests.support.matrix_client import MatrixClient
from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synapse import SynapseServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.synapse


def timeline_ids(client: MatrixClient, room_id: str) -> set[str]:
    """Every event a member sees in the room's timeline (Synapse's own view)."""
    return {event["event_id"] for event in client.messages(room_id, limit=1000)}


def wait_bound_covers(synapse: SynapseServer, event_id: str) -> None:
    """Synapse writes its stream position just after the persist transaction."""
    with psycopg.connect(synapse.db_dsn, autocommit=True) as conn:
        ordering = conn.execute("SELECT stream_ordering FROM events WHERE event_id = %s", (event_id,)).fetchone()[0]
        wait_for(lambda: conn.execute("SELECT min(stream_id) >= %s FROM stream_positions WHERE stream_name = 'events'",
                                      (ordering,)).fetchone()[0], 10, "Synapse's stream position")


def test_every_kind_of_event_is_archived_as_sent(synapse: SynapseServer, fresh_db: str, tmp_path: Path) -> None:
    alice = synapse.register("alice_e2e", displayname="Alice Archive")
    bob = synapse.register("bob_e2e", displayname="Bob Builder")
    before = send_conversation(alice, bob, "Friday plans")  # exists before the archiver's first start
    config = write_config(tmp_path, synapse.db_dsn, fresh_db, f"rooms:\n  - room_id: '{before.room_id}'\n")
    wait_bound_covers(synapse, before.events["media_redaction"])
    with pipeline(config) as p:
        p.run_until_caught_up()
        later_room = alice.create_room(name="Later room", invite=[bob.user_id])
        config = write_config(tmp_path, synapse.db_dsn, fresh_db,
                              f"rooms:\n  - room_id: '{before.room_id}'\n  - room_id: '{later_room}'\n")
        p.reconfigure(config)
        bob.join(later_room)
        after = send_conversation(bob, alice, "Weekend")  # a third room, not monitored
        late = alice.send_text(later_room, "a later message")
        wait_bound_covers(synapse, late)
        p.run_until_caught_up()

    rows = archived(fresh_db)
    assert {e for e, r in rows.items() if r["room_id"] == before.room_id} == timeline_ids(alice, before.room_id)
    assert {e for e, r in rows.items() if r["room_id"] == later_room} == timeline_ids(alice, later_room)
    assert not [e for e, r in rows.items() if r["room_id"] == after.room_id], "unmonitored room was archived"

    e = before.events
    assert rows[e["typo"]]["content"]["body"] == "See you at 7pm sharp" and rows[e["typo"]]["edited_at"]
    assert rows[e["hello"]]["edited_at"] is None
    assert rows[e["reply"]]["reply_to_event_id"] == e["hello"]
    assert rows[e["thread_reply"]]["thread_id"] == e["thread_root"]
    assert rows[e["emote"]]["message_type"] == "m.emote" and rows[e["notice"]]["message_type"] == "m.notice"
    assert rows[e["location"]]["message_type"] == "m.location"
    assert rows[e["poll"]]["message_type"] == "org.matrix.msc3381.poll.start"
    assert rows[e["custom"]]["content"] == {"anything": [1, 2, 3]}
    assert rows[e["sticker"]]["message_type"] == "m.sticker"
    for redacted in before.redacted:
        assert rows[redacted]["redacted"] and rows[redacted]["redacted_by"] == bob.user_id
    assert rows[e["oops"]]["redaction_reason"] == "posted a secret"
    assert rows[e["hello"]]["sender_display_name"] == "Alice Archive"
    assert rows[e["hello"]]["room_name"] == "Friday plans"
    assert rows[e["hello"]]["event"]["content"]["body"].startswith("Hello Bob")

    with psycopg.connect(fresh_db) as conn:
        versions = conn.execute("SELECT content ->> 'body' FROM message_versions WHERE original_event_id = %s"
                                " ORDER BY timestamp, is_edit", (e["typo"],)).fetchall()
        reactions = conn.execute("SELECT key, sender FROM reactions WHERE target_event_id = %s", (e["reply"],)).fetchall()
        jobs = conn.execute("SELECT event_id, media_kind FROM media_jobs").fetchall()
        room = conn.execute("SELECT room_name FROM monitored_rooms WHERE room_id = %s", (later_room,)).fetchone()
    assert [v[0] for v in versions] == ["See you at 6pm", "See you at 7pm", "See you at 7pm sharp"]
    assert reactions == [("👍", alice.user_id)]
    assert {event for event, _ in jobs} >= set(before.media)
    assert room == ("Later room",)

    reports = {r.room_id: r for r in verify(config)}
    assert set(reports) == {before.room_id, later_room}
    assert all(not r.missing and r.archived == r.source for r in reports.values())
    found = status.collect(config)
    assert found.lag_positions == 0 and found.media.get("pending", 0) >= 3 and not found.caught_up


def test_backfill_false_room_starts_from_when_it_was_added(synapse: SynapseServer, fresh_db: str, tmp_path: Path) -> None:
    alice = synapse.register("alice_nobf")
    room = alice.create_room(name="no history please")
    old = alice.send_text(room, "old news")
    wait_bound_covers(synapse, old)
    config = write_config(tmp_path, synapse.db_dsn, fresh_db,
                          f"rooms:\n  - room_id: '{room}'\n    backfill: false\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
        new = alice.send_text(room, "fresh")
        wait_bound_covers(synapse, new)
        p.run_until_caught_up()
        # An operator disables the room in Supabase: honoured on the next round.
        p.follower.archive.execute("UPDATE monitored_rooms SET enabled = false WHERE room_id = %s", (room,))
        hidden = alice.send_text(room, "while disabled")
        wait_bound_covers(synapse, hidden)
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert new in rows and old not in rows and hidden not in rows


def test_verify_reports_a_missing_event_and_exits_4(synapse: SynapseServer, fresh_db: str, tmp_path: Path) -> None:
    alice = synapse.register("alice_verify")
    room = alice.create_room(name="verify me")
    last = alice.send_text(room, "one")
    wait_bound_covers(synapse, last)
    config = write_config(tmp_path, synapse.db_dsn, fresh_db, f"rooms:\n  - room_id: '{room}'\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM archived_messages WHERE event_id = %s", (last,))
    cli = [sys.executable, "-m", "mxarchiverd", "--config", str(tmp_path / "mxarchiver.yaml")]
    result = subprocess.run(cli + ["verify"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 4 and f"MISSING 1: {last}" in result.stdout
    shown = subprocess.run(cli + ["status"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "behind by 0 positions" in shown.stdout, shown.stderr
