"""Media objects shared by several messages (same mxc): deleted only when the last user goes.

Storage keys are `{server}/{media_id}`, so a forward shares its object with the
original. Purges and in-flight uploads of the same object must never leave an
archived_media row pointing at a deleted object, nor leave a purged file behind.
"""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from mxarchiverd.workers.uploader import Uploader
from tests.integration.test_review_media import (  # noqa: F401 - fixtures
    ALICE, BOB, OBJECT, ROOM, image, jobs, media_rows, media_store, objects, source,
)
from tests.support.pipeline import pipeline, run_uploader_until_idle, write_config
from tests.support.synth import insert_event, set_position

pytestmark = pytest.mark.synapse
PURGE = "processing:\n  redaction_policy: purge\n"


def redact(source: psycopg.Connection, *event_ids: str) -> None:
    for event_id in event_ids:
        _, position = insert_event(source, ROOM, "m.room.redaction", {}, sender=ALICE,
                                   top_level={"redacts": event_id})
    set_position(source, position)


def test_purging_every_message_that_shares_an_object_deletes_it(
        source: psycopg.Connection, media_store: Path, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    original, _ = insert_event(source, ROOM, "m.room.message", image(), sender=ALICE)
    forward, position = insert_event(source, ROOM, "m.room.message", image(), sender=BOB)
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, PURGE, f"  media_store_path: {media_store}\n")
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
        run_uploader_until_idle(config, timeout_s=60)
        redact(source, original, forward)
        p.run_until_caught_up(timeout_s=30)
    run_uploader_until_idle(config, timeout_s=60)
    assert jobs(fresh_db) == {original: "purged", forward: "purged"} and media_rows(fresh_db) == {}
    assert not objects(tmp_path).exists(OBJECT), "a purged file stayed in storage"


def test_upload_of_a_message_purged_meanwhile_is_taken_back(
        source: psycopg.Connection, media_store: Path, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    event, position = insert_event(source, ROOM, "m.room.message", image(), sender=ALICE)
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, PURGE, f"  media_store_path: {media_store}\n")
    uploader = Uploader(config, lambda: None)
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
        uploader.open()
        try:
            assert uploader._ensure_bucket()
            [job] = uploader._claim(1)
            redact(source, event)  # redacted while the upload runs: the pending job becomes purged
            p.run_until_caught_up(timeout_s=30)
            uploader._run(job)
        finally:
            uploader.close()
    assert jobs(fresh_db) == {event: "purged"} and media_rows(fresh_db) == {}
    assert not objects(tmp_path).exists(OBJECT), "the upload of a purged message stayed in storage"


def test_upload_racing_the_delete_of_its_object_uploads_again(
        source: psycopg.Connection, media_store: Path, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    original, _ = insert_event(source, ROOM, "m.room.message", image(), sender=ALICE)
    forward, position = insert_event(source, ROOM, "m.room.message", image(), sender=BOB)
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, PURGE, f"  media_store_path: {media_store}\n")
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
    uploader = Uploader(config, lambda: None)
    uploader.open()
    try:
        assert uploader._ensure_bucket()
        [job] = uploader._claim(1)
        other = forward if job.event_id == original else original
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            # What another uploader's purge of the other message does between our claim
            # and our record: it deletes the shared object and stamps the delete.
            conn.execute("UPDATE media_jobs SET state = 'purged', object_deleted_at = clock_timestamp()"
                         " WHERE event_id = %s", (other,))
        uploader._run(job)
        assert jobs(fresh_db)[job.event_id] == "pending" and job.event_id not in media_rows(fresh_db)
    finally:
        uploader.close()
    run_uploader_until_idle(config, timeout_s=60)
    assert jobs(fresh_db)[job.event_id] == "done" and media_rows(fresh_db)[job.event_id] == OBJECT
    assert objects(tmp_path).exists(OBJECT)
