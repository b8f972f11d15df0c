"""Review: media objects must not vanish from storage while an archive row points at them.

Synapse's schema (synth) and a media store directory stand in for Synapse; the
archive's own file backend is the object store, so every object can be checked.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.media.paths import MxcUri
from mxarchiverd.media.resolve import find_media
from mxarchiverd.sinks.storage import FileStore
from mxarchiverd.workers.uploader import Uploader
from tests.support.pipeline import pipeline, run_uploader_until_idle, write_config
from tests.support.synth import SERVER, insert_event, open_source, set_position

pytestmark = pytest.mark.synapse
ROOM = "!review-media:synth.test"
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"
MEDIA_ID = "ReviewMediaAbCdEfGhIjKlM"
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


def test_media_thumbnails_off_queues_no_thumbnail_jobs(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    content = {**image(), "info": {"mimetype": "image/png", "thumbnail_url": f"mxc://{SERVER}/ThumbAbCdEfGhIjKlMnOpQr",
                                   "thumbnail_info": {"mimetype": "image/png"}}}
    event, position = insert_event(source, ROOM, "m.room.message", content, sender=ALICE)
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, "processing:\n  media_thumbnails: false\n")
    assert config.processing.media_thumbnails is False
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
    with psycopg.connect(fresh_db) as conn:
        kinds = [k for (k,) in conn.execute("SELECT media_kind FROM media_jobs WHERE event_id = %s", (event,))]
    assert kinds == ["file"]


def test_mxc_of_another_server_does_not_resolve_to_a_local_upload(
        source: psycopg.Connection, media_store: Path, synapse_schema_db: str) -> None:
    with psycopg.connect(synapse_schema_db, autocommit=True) as conn:
        assert find_media(conn, media_store, MxcUri(SERVER, MEDIA_ID)) is not None, "control: the local one"
        foreign = find_media(conn, media_store, MxcUri("elsewhere.example", MEDIA_ID))
    # Synapse never serves a local file for mxc://elsewhere.example/...: that media is
    # elsewhere.example's, not in remote_media_cache yet, so it must come over HTTP.
    assert foreign is None or foreign.path is None, f"alice's local upload would be archived as {foreign}"
