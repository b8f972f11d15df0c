"""`mxarchiverd media-retry --wait` queues dead jobs again and follows them until the uploader is done."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_archive_synapse import wait_bound_covers
from tests.support.conversation import PNG_1X1
from tests.support.pipeline import pipeline, run_uploader_until_idle, write_config
from tests.support.synapse import SynapseServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.synapse


def states(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM media_jobs GROUP BY state").fetchall())


def test_retried_jobs_are_followed_until_stored(synapse: SynapseServer, fresh_db: str, tmp_path: Path) -> None:
    alice = synapse.register("alice_retry_wait")
    room = alice.create_room(name="retry")
    mxc = alice.upload(PNG_1X1, "image/png", "dot.png")
    last = alice.send(room, "m.room.message", {"msgtype": "m.image", "body": "dot.png", "url": mxc})
    wait_bound_covers(synapse, last)
    config = write_config(tmp_path, synapse.db_dsn, fresh_db, f"rooms:\n  - room_id: '{room}'\n",
                          f"  media_store_path: {synapse.media_store_path}\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE media_jobs SET state = 'dead', last_error = 'storage said no'")
    argv = [sys.executable, "-m", "mxarchiverd", "--config", str(tmp_path / "mxarchiver.yaml"), "media-retry", "--wait"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: states(fresh_db) == {"pending": 1}, 30, "the job queued again")
        assert proc.poll() is None, "media-retry --wait returned before the upload"
        run_uploader_until_idle(config)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["1 dead media job(s) queued again", "done 1"]
    progress = [line for line in err.splitlines() if "mxarchiverd.progress" in line]
    assert progress[0].endswith("media-retry: 0/1 file (0%), elapsed 0s") and progress[-1].endswith("(done)")
    assert states(fresh_db) == {"done": 1}
