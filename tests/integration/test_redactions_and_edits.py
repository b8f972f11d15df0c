"""Redactions and edits: applied the way Synapse applies them, no more, whatever order they arrive in.

Each case writes into Synapse's real schema what Synapse itself would have stored,
then checks that the archive shows what Synapse shows clients (synapse-bridge-facts
§3, §4; Synapse's events_worker._maybe_redact_event_row and
relations.get_applicable_edits).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import insert_event, insert_redaction, open_source, set_position, text

pytestmark = pytest.mark.synapse
ROOM = "!redact:synth.test"
OTHER_ROOM = "!other:synth.test"
ALICE = "@alice:synth.test"
BOB = "@bob:synth.test"
MALLORY = "@mallory:evil.test"
PURGE = "processing:\n  redaction_policy: purge\n"


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {ROOM: "10", OTHER_ROOM: "10"}) as conn:
        yield conn



def edit_of(target: str, body: str) -> dict[str, object]:
    return {"msgtype": "m.text", "body": f"* {body}", "m.new_content": text(body),
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}


def record_redaction(conn: psycopg.Connection, redaction: str, redacts: str, recheck: bool) -> None:
    """What Synapse's _store_redaction writes: the authoritative target (event.redacts)."""
    conn.execute("INSERT INTO redactions (event_id, redacts, have_censored, received_ts, recheck)"
                 " VALUES (%s, %s, false, 0, %s)", (redaction, redacts, recheck))


def test_v10_redaction_target_is_the_top_level_redacts_not_content(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    # Room v10: Synapse takes `redacts` from the top level only. The client-supplied
    # content of POST /redact is stored as-is, so it can carry a "redacts" key too.
    own, _ = insert_event(source, ROOM, "m.room.message", text("alice's own typo"), sender=ALICE)
    bobs, _ = insert_event(source, ROOM, "m.room.message", text("bob's important message"), sender=BOB)
    redaction, position = insert_event(source, ROOM, "m.room.redaction", {"redacts": bobs, "reason": "oops"},
                                       sender=ALICE, top_level={"redacts": own})
    record_redaction(source, redaction, own, recheck=False)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db, PURGE)) as p:
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert rows[own]["redacted"] is True
    assert rows[bobs]["redacted"] is False
    assert rows[bobs]["content"]["body"] == "bob's important message"


def test_unauthorised_redaction_from_another_server_is_not_applied(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    target, _ = insert_event(source, ROOM, "m.room.message", text("keep me"), sender=ALICE)
    # Accepted over federation only because auth deferred the check (recheck_redaction):
    # Synapse then ignores it on read, since evil.test is not alice's server.
    redaction, position = insert_event(source, ROOM, "m.room.redaction", {"redacts": target}, sender=MALLORY,
                                       top_level={"redacts": target})
    source.execute("UPDATE event_json SET internal_metadata = %s WHERE event_id = %s",
                   ('{"recheck_redaction": true}', redaction))
    record_redaction(source, redaction, target, recheck=True)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db, PURGE)) as p:
        p.run_until_caught_up()
    row = archived(fresh_db)[target]
    assert row["redacted"] is False and row["content"]["body"] == "keep me"


def test_edit_sent_in_another_room_does_not_replace_the_original(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    original, _ = insert_event(source, ROOM, "m.room.message", text("what I said here"), sender=ALICE)
    _, position = insert_event(source, OTHER_ROOM, "m.room.message", edit_of(original, "rewritten from elsewhere"),
                               sender=ALICE, ts=1_700_000_100_000)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:  # all-rooms mode: both archived
        p.run_until_caught_up()
    row = archived(fresh_db)[original]
    assert row["content"]["body"] == "what I said here" and row["edited_at"] is None


def test_edit_of_another_event_type_does_not_replace_the_original(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    original, _ = insert_event(source, ROOM, "m.room.message", text("the real text"), sender=ALICE)
    _, position = insert_event(source, ROOM, "org.example.note", edit_of(original, "not an edit Synapse knows"),
                               sender=ALICE, ts=1_700_000_100_000)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up()
    row = archived(fresh_db)[original]
    assert row["content"]["body"] == "the real text" and row["edited_at"] is None


def test_purge_leaves_another_senders_unredacted_event_alone(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    target, _ = insert_event(source, ROOM, "m.room.message", text("alice's secret"), sender=ALICE)
    # Not a valid edit (other sender), so Synapse treats it as Bob's own message; nobody redacts it.
    bobs, _ = insert_event(source, ROOM, "m.room.message", edit_of(target, "bob's words"), sender=BOB)
    redaction, position = insert_event(source, ROOM, "m.room.redaction", {"redacts": target}, sender=ALICE,
                                       top_level={"redacts": target})
    record_redaction(source, redaction, target, recheck=False)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db, PURGE)) as p:
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert rows[target]["content"] == {}
    assert rows[bobs]["redacted"] is False and rows[bobs]["content"].get("m.new_content", {}).get("body") == "bob's words"


def test_control_same_room_same_sender_edit_and_own_redaction_still_apply(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    """Control for the cases above: the valid forms keep working (not xfail)."""
    original, _ = insert_event(source, ROOM, "m.room.message", text("v1"), sender=ALICE)
    insert_event(source, ROOM, "m.room.message", edit_of(original, "v2"), sender=ALICE, ts=1_700_000_100_000)
    gone, _ = insert_event(source, ROOM, "m.room.message", text("bye"), sender=BOB)
    redaction, position = insert_event(source, ROOM, "m.room.redaction", {}, sender=BOB, top_level={"redacts": gone})
    record_redaction(source, redaction, gone, recheck=False)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db)) as p:
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert rows[original]["content"]["body"] == "v2" and rows[original]["edited_at"] is not None
    assert rows[gone]["redacted"] is True


def test_redacting_the_only_edit_of_a_nul_message_restores_the_original_text(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    original, _ = insert_event(source, ROOM, "m.room.message", text("C strings end in \u0000, says alice"),
                               sender=ALICE)
    edit, position = insert_event(source, ROOM, "m.room.message", edit_of(original, "my password is hunter2"),
                                  sender=ALICE, ts=1_700_000_100_000)
    set_position(source, position)
    with pipeline(write_config(tmp_path, synapse_schema_db, fresh_db, PURGE)) as p:
        p.run_until_caught_up()
        assert archived(fresh_db)[original]["content"]["body"] == "my password is hunter2", "control: edit shown"
        # Alice notices and redacts the edit.
        redaction, position = insert_event(source, ROOM, "m.room.redaction", {}, sender=ALICE,
                                           top_level={"redacts": edit}, ts=1_700_000_200_000)
        record_redaction(source, redaction, edit, recheck=False)
        set_position(source, position)
        p.run_until_caught_up()
    rows = archived(fresh_db)
    assert rows[edit]["redacted"] is True and rows[edit]["content"] == {}, "control: the edit itself is purged"
    assert rows[original]["event"] is None, "control: the original is one of the rows kept as raw text"
    assert "hunter2" not in str(rows[original]["content"])
    assert rows[original]["content"]["body"] == "C strings end in \ufffd, says alice"


def test_real_synapse_v10_member_cannot_redact_someone_else_in_the_archive(
        synapse, fresh_db: str, tmp_path: Path) -> None:
    from tests.integration.test_archive_synapse import wait_bound_covers
    from tests.support.matrix_client import CLIENT_V3, _q, new_txn_id

    alice = synapse.register("alice_review_v10")
    bob = synapse.register("bob_review_v10")
    room = alice.create_room(name="v10 room", invite=[bob.user_id], room_version="10")
    bob.join(room)
    bobs = bob.send_text(room, "bob's words, not alice's to delete")
    own = alice.send_text(room, "alice's typo")
    # Synapse stores the client's body as the content of a pre-v11 redaction, untouched.
    path = f"{CLIENT_V3}/rooms/{_q(room)}/redact/{_q(own)}/{new_txn_id()}"
    redaction = alice.request("PUT", path, json={"reason": "typo", "redacts": bobs})["event_id"]
    wait_bound_covers(synapse, redaction)
    shown = {e["event_id"]: e for e in bob.messages(room, limit=50)}
    assert shown[bobs]["content"]["body"].startswith("bob's words"), "control: Synapse did not redact bob's"
    assert shown[own]["content"] == {}, "control: Synapse redacted alice's own message"
    config = write_config(tmp_path, synapse.db_dsn, fresh_db, f"rooms:\n  - room_id: '{room}'\n{PURGE}")
    with pipeline(config) as p:
        p.run_until_caught_up()
    rows = archived(fresh_db, room)
    assert rows[own]["redacted"] is True
    assert rows[bobs]["redacted"] is False and rows[bobs]["content"].get("body", "").startswith("bob's words")


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
