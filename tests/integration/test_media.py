"""Media: from Synapse's media store (or its HTTP API) to Supabase Storage, byte for byte;
which attachments become jobs, and which local file an mxc URI names."""
from __future__ import annotations

import hashlib
import time
import os
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.media.crypto import encrypt_for_test
from mxarchiverd.media.paths import MxcUri
from mxarchiverd.media.resolve import find_media
from tests.integration.test_archive_synapse import wait_bound_covers
from tests.integration.test_media_shared_objects import (  # noqa: F401 - fixtures
    ALICE, MEDIA_ID, ROOM, image, media_store, source,
)
from tests.support.matrix_client import MatrixClient
from tests.support.pipeline import pipeline, run_uploader_until_idle, write_config
from tests.support.storage_double import StorageDouble
from tests.support.synapse import SynapseServer
from tests.support.synth import SERVER, insert_event, set_position

pytestmark = pytest.mark.synapse
BUCKET = "matrix-media"


def media_config(tmp_path: Path, synapse: SynapseServer, archive: str, double: StorageDouble, room: str,
                 media_store: Path | None = None, token: str | None = None, extra: str = ""):
    store = media_store or synapse.media_store_path
    text = (f"rooms:\n  - room_id: '{room}'\n"
            f"supabase:\n  url: {double.url}\n  service_role_key: {double.service_key}\n"
            f"  storage:\n    bucket: {BUCKET}\n    allowed_mime_types: ['image/*', 'video/*', 'audio/*',"
            f" 'application/pdf', 'application/octet-stream']\n"
            f"processing:\n  retry_delay: 200ms\n  max_file_size: 80MB\n{extra}"
            f"matrix:\n  homeserver_url: {synapse.base_url}\n" + (f"  access_token: {token}\n" if token else ""))
    config = write_config(tmp_path, synapse.db_dsn, archive, text, f"  media_store_path: {store}\n")
    assert config.archive.storage_backend == "supabase"
    return config


def send_file(client: MatrixClient, room: str, data: bytes | Path, mime: str, name: str, msgtype: str,
              extra: dict | None = None) -> tuple[str, str]:
    mxc = client.upload(data, mime, name)
    content = {"msgtype": msgtype, "body": name, "url": mxc, "info": {"mimetype": mime}, **(extra or {})}
    return client.send(room, "m.room.message", content), mxc


def archived_media(dsn: str) -> dict[str, dict]:
    with psycopg.connect(dsn) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return {r["event_id"]: r for r in cur.execute("SELECT * FROM archived_media WHERE media_kind = 'file'")}


def job_states(dsn: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT event_id, state, last_error FROM media_jobs").fetchall()
    return {event_id: (state, error) for event_id, state, error in rows}


def test_media_lands_byte_identical_with_metadata(synapse: SynapseServer, storage_double: StorageDouble,
                                                  fresh_db: str, tmp_path: Path) -> None:
    alice = synapse.register("alice_media")
    room = alice.create_room(name="media")
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        for _ in range(60):
            out.write(os.urandom(1024 * 1024))
    sent = {
        "image": send_file(alice, room, b"\x89PNG\r\n\x1a\n" + os.urandom(3000), "image/png", "photo.png", "m.image"),
        "audio": send_file(alice, room, os.urandom(50_000), "audio/ogg", "voice.ogg", "m.audio"),
        "video": send_file(alice, room, os.urandom(400_000), "video/mp4", "clip.mp4", "m.video"),
        "file": send_file(alice, room, b"%PDF-1.4 " + os.urandom(9000), "application/pdf", "doc.pdf", "m.file"),
        "big": send_file(alice, room, big, "video/mp4", "big.mp4", "m.video"),
    }
    originals = {label: hashlib.sha256((synapse.media_store_path / "local_content" / mxc[-24:][:2] /
                                        mxc[-22:][:2] / mxc[-20:]).read_bytes()).hexdigest()
                 for label, (_, mxc) in sent.items()}
    assert originals["big"] == hashlib.sha256(big.read_bytes()).hexdigest()
    wait_bound_covers(synapse, sent["big"][0])
    config = media_config(tmp_path, synapse, fresh_db, storage_double, room)
    with pipeline(config) as p:
        p.run_until_caught_up()
    run_uploader_until_idle(config)
    rows = archived_media(fresh_db)
    for label, (event_id, mxc) in sent.items():
        row = rows[event_id]
        assert row["sha256"] == originals[label], label
        assert storage_double.object_bytes_sha256(BUCKET, row["storage_path"]) == originals[label], label
        assert row["matrix_url"] == mxc and row["storage_path"] == mxc.removeprefix("mxc://")
        assert row["public_url"] == f"{storage_double.url}/storage/v1/object/{BUCKET}/{row['storage_path']}"
    assert rows[sent["big"][0]]["file_size"] == 60 * 1024 * 1024 and rows[sent["image"][0]]["mime_type"] == "image/png"
    assert rows[sent["audio"][0]]["media_type"] == "audio" and rows[sent["file"][0]]["original_filename"] == "doc.pdf"
    assert storage_double.count("tus_create") >= 1  # the 60 MB file went up resumably
    with psycopg.connect(fresh_db) as conn:
        analysis = conn.execute("SELECT count(*) FROM analysis_jobs").fetchone()
    assert analysis == (len(sent),)


def test_remote_http_encrypted_and_refused_media(synapse: SynapseServer, storage_double: StorageDouble,
                                                 synapse_db: psycopg.Connection, fresh_db: str, tmp_path: Path) -> None:
    alice = synapse.register("alice_media_edge")
    room = alice.create_room(name="media edge cases")
    # Remote media: cached under the local filesystem_id, not under the remote media id.
    remote_bytes, fsid = os.urandom(5000), "QwErTyUiOpAsDfGhJkLzXcVb"
    remote_file = synapse.media_store_path / "remote_content" / "remote.example" / fsid[:2] / fsid[2:4] / fsid[4:]
    remote_file.parent.mkdir(parents=True, exist_ok=True)
    remote_file.write_bytes(remote_bytes)
    synapse_db.execute("""INSERT INTO remote_media_cache (media_origin, media_id, media_type, created_ts, upload_name,
                          media_length, filesystem_id) VALUES ('remote.example', 'RemoteMediaId123', 'image/jpeg', 0,
                          'far.jpg', %s, %s)""", (len(remote_bytes), fsid))
    remote_event = alice.send(room, "m.room.message", {"msgtype": "m.image", "body": "far.jpg",
                                                      "url": "mxc://remote.example/RemoteMediaId123"})
    # Encrypted attachment: ciphertext in the store, key in content.file.
    plaintext = b"secret attachment " * 500
    ciphertext, file_info = encrypt_for_test(plaintext)
    enc_mxc = alice.upload(ciphertext, "application/octet-stream", "cipher.bin")
    enc_event = alice.send(room, "m.room.message", {"msgtype": "m.file", "body": "plan.pdf",
                                                   "info": {"mimetype": "application/pdf"},
                                                   "file": {**file_info, "url": enc_mxc}})
    crafted = ["mxc://../../etc/passwd", f"mxc://{synapse.server_name}/..%2F..%2Fetc%2Fpasswd",
               "mxc:///etc/passwd", f"mxc://{synapse.server_name}/" + "a" * 300,
               f"mxc://{synapse.server_name}/ab/../../../../etc/passwd"]
    crafted_events = [alice.send(room, "m.room.message", {"msgtype": "m.file", "body": "x", "url": url})
                      for url in crafted]
    wait_bound_covers(synapse, crafted_events[-1])
    # An empty media store: every local file has to come over the authenticated media API.
    config = media_config(tmp_path, synapse, fresh_db, storage_double, room,
                          media_store=tmp_path / "empty-store", token=alice.access_token)
    (tmp_path / "empty-store").mkdir()
    with pipeline(config) as p:
        p.run_until_caught_up()
    run_uploader_until_idle(config)
    rows, states = archived_media(fresh_db), job_states(fresh_db)
    assert states[enc_event][0] == "done" and rows[enc_event]["sha256"] == hashlib.sha256(plaintext).hexdigest()
    assert storage_double.object_bytes_sha256(BUCKET, rows[enc_event]["storage_path"]) == rows[enc_event]["sha256"]
    assert rows[enc_event]["encrypted"] is True
    # The remote file is not in the empty store; it is in Synapse's cache but the
    # archive points at the empty store, so the remote case runs with the real store below.
    for event_id in crafted_events:
        state, reason = states[event_id]
        assert state == "refused" and reason, (event_id, state, reason)
    assert not [k for k in storage_double.objects(BUCKET) if "etc" in k or "passwd" in k]

    config_store = media_config(tmp_path, synapse, fresh_db, storage_double, room)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE media_jobs SET state = 'pending', attempts = 0, next_attempt_at = NOW()"
                     " WHERE event_id = %s", (remote_event,))
    run_uploader_until_idle(config_store)
    remote_row = archived_media(fresh_db)[remote_event]
    assert remote_row["sha256"] == hashlib.sha256(remote_bytes).hexdigest()
    assert remote_row["mime_type"] == "image/jpeg" and remote_row["original_filename"] == "far.jpg"


def test_storage_down_for_a_minute_loses_nothing_and_stores_nothing_twice(
        synapse: SynapseServer, storage_double: StorageDouble, fresh_db: str, tmp_path: Path) -> None:
    alice = synapse.register("alice_outage")
    room = alice.create_room(name="outage")
    config = media_config(tmp_path, synapse, fresh_db, storage_double, room)
    from mxarchiverd.workers.uploader import Uploader

    uploader = Uploader(config, lambda: None)
    uploader.open()
    try:
        with pipeline(config) as p:
            p.run_until_caught_up()
            assert uploader.produce() is not None and uploader.bucket_ready
            storage_double.down()
            sent = [send_file(alice, room, os.urandom(20_000 + i), "image/png", f"p{i}.png", "m.image")[0]
                    for i in range(6)]
            wait_bound_covers(synapse, sent[-1])
            p.run_until_caught_up()
            outage_ends = time.monotonic() + 60
            while time.monotonic() < outage_ends:  # the uploader keeps trying through the outage
                _, delay = uploader.produce()
                time.sleep(min(delay, 0.2))
            assert not archived_media(fresh_db)
            assert all(state == "pending" for state, _ in job_states(fresh_db).values())
            storage_double.up()
    finally:
        uploader.close()
    run_uploader_until_idle(config)
    rows = archived_media(fresh_db)
    assert set(rows) == set(sent) and len(storage_double.objects(BUCKET)) == len(sent)
    with psycopg.connect(fresh_db) as conn:
        counts = conn.execute("SELECT count(*), count(DISTINCT (event_id, matrix_url)) FROM archived_media").fetchone()
    assert counts == (len(sent), len(sent))


def test_purge_policy_deletes_the_stored_object(synapse: SynapseServer, storage_double: StorageDouble,
                                                fresh_db: str, tmp_path: Path) -> None:
    alice = synapse.register("alice_purge")
    room = alice.create_room(name="purge")
    keep, _ = send_file(alice, room, os.urandom(1000), "image/png", "keep.png", "m.image")
    gone, _ = send_file(alice, room, os.urandom(1000), "image/png", "gone.png", "m.image")
    wait_bound_covers(synapse, gone)
    config = media_config(tmp_path, synapse, fresh_db, storage_double, room,
                          extra="  redaction_policy: purge\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
        run_uploader_until_idle(config)
        gone_path = archived_media(fresh_db)[gone]["storage_path"]
        assert gone_path in storage_double.objects(BUCKET)
        redaction = alice.redact(room, gone, reason="wrong photo")
        wait_bound_covers(synapse, redaction)
        p.run_until_caught_up()
    run_uploader_until_idle(config)
    assert gone_path not in storage_double.objects(BUCKET) and gone not in archived_media(fresh_db)
    assert keep in archived_media(fresh_db)
    assert job_states(fresh_db)[gone][0] == "purged"


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
