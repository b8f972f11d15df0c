"""A stored upload is recorded in the archive in one round trip (archive/media_queue.py record).

The archive is Supabase, across a network, and a small file's upload takes less
than a few round trips: the object's lock, the purge check, the job marked done and
its archived_media row travel with BEGIN and COMMIT in one flight, beside the pool's
check of the connection. Counted through a loopback proxy against a real PostgreSQL.
(What happens when a purge races the upload is test_media_shared_objects.py's.)
"""
from __future__ import annotations

from collections.abc import Iterator

import orjson
import psycopg
import pytest

from mxarchiverd.archive.batches import write_batch
from mxarchiverd.archive.media_queue import MediaQueue, Recorded, Upload
from mxarchiverd.archive.migrations import migrate
from mxarchiverd.classify import build_row
from mxarchiverd.db import open_pool
from mxarchiverd.pipeline.cursors import StreamCursor
from mxarchiverd.pipeline.messages import RowBatch
from tests.support.tcp_proxy import TcpProxy

ROOM, ALICE, MXC = "!room:x", "@alice:x", "mxc://x/cat"
# The pool's check of the connection it lends (db.open_pool), then the record itself.
POOL_CHECK = 1


@pytest.fixture
def archive(fresh_db: str) -> Iterator[str]:
    """An archive with one image message, so one pending media job."""
    with psycopg.connect(fresh_db, autocommit=True, prepare_threshold=None) as conn:
        migrate(conn)
        content = {"msgtype": "m.image", "body": "cat.png", "url": MXC, "info": {"mimetype": "image/png"}}
        event = {"type": "m.room.message", "content": content, "sender": ALICE, "origin_server_ts": 1,
                 "room_id": ROOM, "event_id": "$cat"}
        source = {"event_id": "$cat", "room_id": ROOM, "type": "m.room.message", "state_key": None,
                  "sender": ALICE, "origin_server_ts": 1, "stream_ordering": 1, "topological_ordering": 1,
                  "json": orjson.dumps(event).decode(), "soft_failed": False, "redacts": None}
        write_batch(conn, RowBatch(StreamCursor("events", 1), [build_row(source)]), purge=False)
    yield fresh_db


def upload(object_path: str) -> Upload:
    return Upload(object_path, f"https://storage.test/{object_path}", "cat.png", 3, "image/png", "ab" * 32)


@pytest.mark.parametrize("analysis", [False, True])
def test_an_upload_is_recorded_in_one_round_trip(archive: str, analysis: bool) -> None:
    proxy = TcpProxy.start_for(archive)
    pool = open_pool(proxy.dsn_for(archive), "test uploader", 1, 10)
    try:
        queue = MediaQueue(pool, "matrix-media")
        [job] = [j for j in queue.claim(5) if j.media_kind == "file"]
        before = proxy.round_trips
        outcome = queue.record(job, upload(job.object_path), analysis=analysis, delete=lambda path: True)
        trips = proxy.round_trips - before
    finally:
        pool.close()
        proxy.stop()
    assert outcome is Recorded.DONE
    assert trips == POOL_CHECK + 1, f"recording took {trips} round trips"
    with psycopg.connect(archive) as conn:
        assert conn.execute("SELECT state FROM media_jobs WHERE id = %s", (job.id,)).fetchone() == ("done",)
        row = conn.execute("SELECT file_size, sha256, storage_path FROM archived_media WHERE event_id = '$cat'"
                           " AND media_kind = 'file'").fetchone()
        assert row == (3, "ab" * 32, job.object_path)
        analysed = conn.execute("SELECT count(*) FROM analysis_jobs").fetchone()
        assert analysed == ((1,) if analysis else (0,))
