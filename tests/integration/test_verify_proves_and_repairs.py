"""verify finds exactly what is wrong with an archive, --repair restores it, and verify then proves it.

End to end with a real Synapse and real clients: a conversation is archived
(rows and media, through the Supabase Storage double), then the archive is
damaged in four ways an operator could meet (rows lost, a redaction not
applied, an edited message's content changed, a stored object gone).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support.conversation import send_conversation
from tests.support.pipeline import archived, pipeline, run_uploader_until_idle, write_config
from tests.support.storage_double import StorageDouble
from tests.support.synapse import SynapseServer
from tests.integration.test_archive_synapse import wait_bound_covers

pytestmark = pytest.mark.synapse
BUCKET = "matrix-media"


def verify_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cli = [sys.executable, "-m", "mxarchiverd", "--config", str(tmp_path / "mxarchiver.yaml"), "verify", *args]
    return subprocess.run(cli, capture_output=True, text=True, timeout=120)


def test_verify_lists_exactly_the_damage_and_repair_restores_it(
        synapse: SynapseServer, fresh_db: str, storage_double: StorageDouble, tmp_path: Path) -> None:
    alice = synapse.register("alice_proof", displayname="Alice")
    bob = synapse.register("bob_proof", displayname="Bob")
    sent = send_conversation(alice, bob, "Proof room")
    wait_bound_covers(synapse, sent.events["media_redaction"])
    extra = (f"rooms:\n  - room_id: '{sent.room_id}'\n"
             f"supabase:\n  url: {storage_double.url}\n  service_role_key: {storage_double.service_key}\n"
             f"  storage:\n    bucket: {BUCKET}\n")
    config = write_config(tmp_path, synapse.db_dsn, fresh_db, extra,
                          f"  media_store_path: {synapse.media_store_path}\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
    run_uploader_until_idle(config)
    clean = verify_cli(tmp_path, "--media")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    e = sent.events
    lost = [e["hello"], e["emote"], e["notice"]]
    pdf_mxc, pdf_sha = sent.media[e["file"]]
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM archived_messages WHERE event_id = ANY(%s)", (lost,))
        conn.execute("UPDATE archived_messages SET redacted = FALSE, redacted_at = NULL, redacted_by = NULL,"
                     " redaction_reason = NULL, redaction_event_id = NULL WHERE event_id = %s", (e["oops"],))
        conn.execute("UPDATE archived_messages SET content = %s WHERE event_id = %s",
                     ('{"msgtype": "m.text", "body": "See you never"}', e["typo"]))
        pdf_path = conn.execute("SELECT storage_path FROM archived_media WHERE event_id = %s AND media_kind = 'file'",
                                (e["file"],)).fetchone()[0]
    assert storage_double.remove_object(BUCKET, pdf_path)

    found = verify_cli(tmp_path, "--media", "--json")
    assert found.returncode == 4, found.stdout + found.stderr
    report = json.loads(found.stdout)
    problems = {(p["kind"], p["event_id"]) for room in report["rooms"] for p in room["problems"]}
    problems |= {(p["kind"], p["event_id"]) for p in report["media"]["problems"]}
    assert problems == {("missing", lost[0]), ("missing", lost[1]), ("missing", lost[2]),
                        ("redaction_not_applied", e["oops"]), ("edit_differs", e["typo"]),
                        ("media_object_missing", e["file"])}
    [media_problem] = report["media"]["problems"]
    assert media_problem["matrix_url"] == pdf_mxc and media_problem["source_has"] == "on disk"
    text = verify_cli(tmp_path, "--media")
    assert text.returncode == 4
    for event_id in [*lost, e["oops"], e["typo"], e["file"]]:
        assert event_id in text.stdout

    repaired = verify_cli(tmp_path, "--media", "--repair")
    assert repaired.returncode == 5, repaired.stdout + repaired.stderr
    assert "events re-archived" in repaired.stdout and "media jobs queued again 1" in repaired.stdout
    run_uploader_until_idle(config)
    proven = verify_cli(tmp_path, "--media")
    assert proven.returncode == 0, proven.stdout + proven.stderr

    rows = archived(fresh_db, sent.room_id)
    assert set(lost) <= set(rows)
    assert rows[e["hello"]]["content"]["body"] == "Hello Bob, are we still on for Friday?"
    assert rows[e["oops"]]["redacted"] and rows[e["oops"]]["redaction_reason"] == "posted a secret"
    assert rows[e["typo"]]["content"]["body"] == "See you at 7pm sharp"
    assert storage_double.object_bytes_sha256(BUCKET, pdf_path) == pdf_sha
    with psycopg.connect(fresh_db) as conn:
        runs = conn.execute("SELECT exit_code FROM verify_runs ORDER BY id").fetchall()
    assert [code for code, in runs] == [0, 4, 4, 5, 0]
