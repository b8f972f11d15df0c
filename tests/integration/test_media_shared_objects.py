"""Media objects shared by several messages (same mxc): deleted only when the last user goes.

Storage keys are `{server}/{media_id}`, so a forward shares its object with the
original. Purges, in-flight uploads of the same object and uploaders whose lease
ran out must never leave an archived_media row pointing at a deleted object, nor
leave a purged file behind.

Synapse's schema (synth) and a media store directory stand in for Synapse; the
archive's own file backend is the object store, so every object can be checked.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.sinks.storage import FileStore
from mxarchiverd.workers.uploader import Uploader
from tests.support.pipeline import pipeline, run_uploader_until_idle, write_config
from tests.support.synth import SERVER, insert_event, open_source, set_position

pytestmark = pytest.mark.synapse
ROOM = "!media:synth.test"
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"
MEDIA_ID = "SharedMediaAbCdEfGhIjKlM"
MXC = f"mxc://{SERVER}/{MEDIA_ID}"
OBJECT = f"{SERVER}/{MEDIA_ID}"
BUCKET = "matrix-media"


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {ROOM: "10"}) as conn:
        yield conn


@pytest.fixture
def media_store(tmp_path: Path, source: psycopg.Connection) -> Path:
    """One local upload of alice's, on disk where Synapse keeps it and in its table."""
    store = tmp_path / "media_store"
    path = store / "local_content" / MEDIA_ID[:2] / MEDIA_ID[2:4] / MEDIA_ID[4:]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))
    source.execute("INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts, upload_name,"
                   " user_id) VALUES (%s, 'image/png', %s, 0, 'photo.png', %s)",
                   (MEDIA_ID, path.stat().st_size, ALICE))
    return store


def image(url: str = MXC) -> dict[str, object]:
    return {"msgtype": "m.image", "body": "photo.png", "url": url, "info": {"mimetype": "image/png"}}


def objects(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "media", BUCKET)


def jobs(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT event_id, state FROM media_jobs").fetchall())


def media_rows(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT event_id, storage_path FROM archived_media").fetchall())


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


def test_uploader_with_an_expired_lease_does_not_delete_the_finished_object(
        source: psycopg.Connection, media_store: Path, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    event, position = insert_event(source, ROOM, "m.room.message", image(), sender=ALICE)
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, "", f"  media_store_path: {media_store}\n")
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
    slow, fast = Uploader(config, lambda: None), Uploader(config, lambda: None)
    slow.open()
    fast.open()
    try:
        assert slow._ensure_bucket() and fast._ensure_bucket()
        [slow_job] = slow._claim(1)
        # The slow uploader is cut off from the archive database past its lease
        # (network partition, paused VM): its lease runs out and another host claims.
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("UPDATE media_jobs SET next_attempt_at = NOW() - interval '1 second'")
        [fast_job] = fast._claim(1)
        assert fast_job.id == slow_job.id
        fast._run(fast_job)
        assert jobs(fresh_db)[event] == "done" and objects(tmp_path).exists(OBJECT)
        slow._run(slow_job)  # the slow one comes back and finishes its copy
    finally:
        slow.close()
        fast.close()
    assert jobs(fresh_db)[event] == "done" and media_rows(fresh_db)[event] == OBJECT
    assert objects(tmp_path).exists(OBJECT), "archived_media points at an object that was deleted"


def test_purging_one_message_keeps_the_object_of_another_message_with_the_same_mxc(
        source: psycopg.Connection, media_store: Path, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    original, _ = insert_event(source, ROOM, "m.room.message", image(), sender=ALICE)
    forward, position = insert_event(source, ROOM, "m.room.message", image(), sender=BOB)  # clients forward by mxc
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, "processing:\n  redaction_policy: purge\n",
                          f"  media_store_path: {media_store}\n")
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
        run_uploader_until_idle(config, timeout_s=60)
        assert jobs(fresh_db) == {original: "done", forward: "done"}
        _, position = insert_event(source, ROOM, "m.room.redaction", {}, sender=ALICE,
                                   top_level={"redacts": original})
        set_position(source, position)
        p.run_until_caught_up(timeout_s=30)
    run_uploader_until_idle(config, timeout_s=60)
    assert jobs(fresh_db)[original] == "purged" and original not in media_rows(fresh_db)
    assert media_rows(fresh_db)[forward] == OBJECT
    assert objects(tmp_path).exists(OBJECT), "bob's unredacted message lost its archived file"
