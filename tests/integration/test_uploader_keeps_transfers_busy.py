"""The uploader keeps its concurrent_uploads transfers busy: it holds a queued job behind
each running one, so a worker that finishes starts its next file at once, without
waiting for the stage's next round or a claim's round trip to the archive (small
files to a remote Storage went at most concurrent_uploads per 50 ms round); and it
gives the queued jobs back when it stops, instead of leaving them leased for 120 s.

Synapse's schema (synth) and a media store directory stand in for Synapse; the
Storage double, over a real socket, answers each request late like a remote one.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.archive.media_queue import LEASE_SECONDS
from mxarchiverd.config import Config
from mxarchiverd.workers.uploader import HELD_PER_SLOT, Uploader
from tests.support.pipeline import pipeline, write_config
from tests.support.storage_double import StorageDouble
from tests.support.synth import SERVER, insert_event, open_source, set_position
from tests.support.waiting import wait_for

pytestmark = pytest.mark.synapse
ROOM = "!busy:synth.test"
SLOTS = 2
FILES = HELD_PER_SLOT * SLOTS


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {ROOM: "10"}) as conn:
        yield conn


def add_files(source: psycopg.Connection, store: Path, count: int) -> list[str]:
    """`count` local uploads on disk where Synapse keeps them, each in an m.file message."""
    events, position = [], 0
    for i in range(count):
        media_id = f"BusyMedia{i:02d}AbCdEfGhIjKlMn"
        path = store / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(3000 + i))
        source.execute("INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts,"
                       " upload_name, user_id) VALUES (%s, 'application/octet-stream', %s, 0, %s, %s)",
                       (media_id, path.stat().st_size, f"f{i}.bin", f"@alice:{SERVER}"))
        content = {"msgtype": "m.file", "body": f"f{i}.bin", "url": f"mxc://{SERVER}/{media_id}",
                   "info": {"mimetype": "application/octet-stream"}}
        event, position = insert_event(source, ROOM, "m.room.message", content)
        events.append(event)
    set_position(source, position)
    return events


def configured(tmp_path: Path, synapse_dsn: str, archive: str, double: StorageDouble, store: Path) -> Config:
    text = (f"supabase:\n  url: {double.url}\n  service_role_key: {double.service_key}\n"
            f"processing:\n  concurrent_uploads: {SLOTS}\n  retry_delay: 200ms\n")
    config = write_config(tmp_path, synapse_dsn, archive, text, f"  media_store_path: {store}\n")
    assert config.archive.storage_backend == "supabase"
    return config


def job_states(dsn: str) -> dict[str, tuple[str, bool]]:
    """event_id -> (state, due now) of the file jobs."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT event_id, state, next_attempt_at <= NOW() FROM media_jobs"
                            " WHERE media_kind = 'file'").fetchall()
    return {event: (state, due) for event, state, due in rows}


def prepared(source: psycopg.Connection, tmp_path: Path, synapse_schema_db: str, fresh_db: str,
             double: StorageDouble) -> tuple[Config, list[str]]:
    store = tmp_path / "media_store"
    events = add_files(source, store, FILES)
    config = configured(tmp_path, synapse_schema_db, fresh_db, double, store)
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
    assert set(job_states(fresh_db)) == set(events)
    return config, events


def test_one_round_starts_a_second_file_per_transfer_slot(
        source: psycopg.Connection, storage_double: StorageDouble, synapse_schema_db: str, fresh_db: str,
        tmp_path: Path) -> None:
    config, events = prepared(source, tmp_path, synapse_schema_db, fresh_db, storage_double)
    uploader = Uploader(config, lambda: None)
    uploader.open()
    try:
        uploader.produce()  # one round of the stage's loop, then none
        wait_for(lambda: all(state == "done" for state, _ in job_states(fresh_db).values()), 30,
                 f"all {FILES} files stored after one round with {SLOTS} transfer slots")
    finally:
        uploader.close()
    assert {p.split("/")[-1] for p in storage_double.objects("matrix-media")} >= {
        f"BusyMedia{i:02d}AbCdEfGhIjKlMn" for i in range(FILES)}


def test_jobs_queued_behind_the_transfers_are_given_back_on_stop(
        source: psycopg.Connection, storage_double: StorageDouble, synapse_schema_db: str, fresh_db: str,
        tmp_path: Path) -> None:
    assert LEASE_SECONDS > 60  # a job left leased would not be due for a minute or more
    config, events = prepared(source, tmp_path, synapse_schema_db, fresh_db, storage_double)
    uploader = Uploader(config, lambda: None)
    uploader.open()
    try:
        assert uploader._ensure_bucket()
        storage_double.delay(2.0)  # the first transfers are still running when the stop comes
        uploader.produce()
        assert len(uploader.running) == FILES
    finally:
        storage_double.delay(0)
        uploader.close()
    states = job_states(fresh_db)
    # Each job was either uploaded by a worker or handed back due at once, never left leased.
    assert all(state == "done" or (state == "pending" and due) for state, due in states.values()), states
    assert any(state == "pending" for state, _ in states.values()), "the stop came after every transfer"
