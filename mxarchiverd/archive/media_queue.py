"""The media-job queue in the archive: claim with a lease, finish, retry, dead-letter, purge.

A claim is one short transaction (FOR UPDATE SKIP LOCKED, then a lease written
into next_attempt_at), so no lock is held during a transfer and any number of
uploaders, on any number of hosts, share the queue. A job whose uploader died
becomes due again when its lease runs out.

Storage objects are keyed by mxc (`{server}/{media_id}`), so a forwarded file
shares its object with the original. An object is deleted only under an advisory
lock on its path and only when nothing else still uses it, and every delete is
stamped (object_deleted_at), so an upload of the same object that raced the
delete sees it when it records and uploads again.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from mxarchiverd.archive.connection import pipelined_transaction
from mxarchiverd.db import scalar
from mxarchiverd.media.jobs import Job, Reschedule, media_type_label, should_delete_object

LEASE_SECONDS = 120

CLAIM_SQL = """
UPDATE media_jobs j SET next_attempt_at = NOW() + make_interval(secs => %(lease)s), updated_at = NOW()
 WHERE j.id IN (SELECT id FROM media_jobs WHERE state IN ('pending', 'purge') AND next_attempt_at <= NOW()
                 ORDER BY next_attempt_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING j.id, j.event_id, j.media_kind, j.matrix_url, j.encrypted_file, j.media_type,
          j.original_filename, j.mime_type, j.declared_size, j.state, j.attempts, NOW(),
          (SELECT m.room_id FROM archived_messages m WHERE m.event_id = j.event_id)
"""
EXTEND_LEASES_SQL = """
UPDATE media_jobs SET next_attempt_at = NOW() + make_interval(secs => %(lease)s)
 WHERE id = ANY(%(ids)s) AND state IN ('pending', 'purge')
"""
RELEASE_SQL = """
UPDATE media_jobs SET next_attempt_at = NOW()
 WHERE id = ANY(%(ids)s) AND state IN ('pending', 'purge')
"""
# Recording an upload is one statement after the object's lock, sent with BEGIN and
# COMMIT in one round trip (MediaQueue.record): the archive is across a network, and a
# small file's upload is shorter than a handful of round trips. In order: was the object
# deleted by a concurrent purge since we claimed the job; if not, the job marked done
# if it is still ours (pending), its archived_media row, an analysis job for a file
# when asked; if so, the job (still ours) due again at once, to upload again rather
# than record a missing file. Returns (the archived_media id or NULL, whether the job
# is to be uploaded again); neither means the job is lost: nothing was written.
RECORD_UPLOAD_SQL = """
WITH deleted AS (
  SELECT EXISTS (SELECT 1 FROM media_jobs
                  WHERE matrix_url = %(matrix_url)s AND media_kind = %(media_kind)s
                    AND object_deleted_at >= %(claimed_at)s) AS since_claim
), done AS (
  UPDATE media_jobs SET state = 'done', last_error = NULL, updated_at = NOW()
   WHERE id = %(id)s AND state = 'pending' AND NOT (SELECT since_claim FROM deleted)
  RETURNING id
), media AS (
  INSERT INTO archived_media (event_id, media_type, original_filename, file_size, mime_type, matrix_url,
                              storage_bucket, storage_path, public_url, media_kind, sha256, encrypted)
  SELECT %(event_id)s, %(media_type)s, %(original_filename)s, %(file_size)s, %(mime_type)s, %(matrix_url)s,
         %(storage_bucket)s, %(storage_path)s, %(public_url)s, %(media_kind)s, %(sha256)s, %(encrypted)s
    FROM done
  ON CONFLICT (event_id, media_kind, matrix_url) DO UPDATE
     SET file_size = EXCLUDED.file_size, mime_type = EXCLUDED.mime_type, sha256 = EXCLUDED.sha256,
         storage_path = EXCLUDED.storage_path, public_url = EXCLUDED.public_url, updated_at = NOW()
  RETURNING id
), analysis AS (
  INSERT INTO analysis_jobs (media_id, event_id, storage_bucket, storage_path, mime_type)
  SELECT media.id, %(event_id)s, %(storage_bucket)s, %(storage_path)s, %(mime_type)s FROM media WHERE %(analysis)s
  ON CONFLICT (media_id) DO NOTHING
), again AS (
  UPDATE media_jobs SET last_error = 'the object was deleted by a concurrent purge; uploading again',
         next_attempt_at = NOW(), updated_at = NOW()
   WHERE id = %(id)s AND state = 'pending' AND (SELECT since_claim FROM deleted)
  RETURNING id
)
SELECT (SELECT id FROM media), EXISTS (SELECT 1 FROM again)
"""
RESCHEDULE_SQL = """
UPDATE media_jobs SET state = %(state)s, attempts = attempts + %(counted)s, last_error = %(error)s,
       next_attempt_at = NOW() + make_interval(secs => %(delay)s), updated_at = NOW()
 WHERE id = %(id)s AND state = 'pending'
"""
PURGED_SQL = """
WITH done AS (UPDATE media_jobs SET state = 'purged', last_error = NULL, updated_at = NOW()
               WHERE id = %(id)s AND state = 'purge' RETURNING event_id, media_kind, matrix_url)
DELETE FROM archived_media m USING done
 WHERE m.event_id = done.event_id AND m.media_kind = done.media_kind AND m.matrix_url = done.matrix_url
"""
# Two-key advisory locks live apart from the one-key space the migrations use.
OBJECT_LOCK_SPACE = 0x6D6F626A  # "mobj"
OBJECT_LOCK_SQL = "SELECT pg_advisory_xact_lock(%(space)s, hashtext(%(path)s))"
JOB_STATE_SQL = "SELECT state FROM media_jobs WHERE id = %(id)s"
# Whatever still needs the object: another job that will upload or has uploaded it
# (dead ones can be revived by media-retry), or another event's archived file.
LIVE_REFERENCE_SQL = """
SELECT EXISTS (SELECT 1 FROM media_jobs
                WHERE matrix_url = %(matrix_url)s AND media_kind = %(media_kind)s AND id <> %(id)s
                  AND state NOT IN ('purge', 'purged', 'refused'))
    OR EXISTS (SELECT 1 FROM archived_media
                WHERE storage_bucket = %(bucket)s AND storage_path = %(path)s AND event_id <> %(event_id)s)
"""
# clock_timestamp(), not NOW(): the stamp must come after the delete itself.
OBJECT_DELETED_SQL = "UPDATE media_jobs SET object_deleted_at = clock_timestamp() WHERE id = %(id)s"
BACKLOG_SQL = "SELECT count(*) FROM media_jobs WHERE state IN ('pending', 'purge')"
DEAD_SQL = "SELECT count(*) FROM media_jobs WHERE state = 'dead'"
LAST_DEAD_SQL = "SELECT last_error FROM media_jobs WHERE state = 'dead' ORDER BY updated_at DESC LIMIT 1"
RETRY_DEAD_SQL = """
UPDATE media_jobs SET state = 'pending', attempts = 0, last_error = NULL, next_attempt_at = NOW(), updated_at = NOW()
 WHERE state = 'dead' RETURNING id
"""
STATE_COUNTS_SQL = "SELECT state, count(*) FROM media_jobs GROUP BY state"

# Deletes a stored object; False if storage refused (the caller logs why).
DeleteObject = Callable[[str], bool]


@dataclass(frozen=True)
class Upload:
    """What the uploader stored for a job, to record in archived_media."""

    object_path: str
    public_url: str
    filename: str | None
    size: int
    mime_type: str | None
    sha256: str


class Recorded(enum.Enum):
    DONE = "done"                  # archived_media has the file
    AGAIN = "again"                # a concurrent purge deleted the object: the job is due again
    LOST = "lost"                  # the job is no longer ours (purged, or finished by another uploader)


class MediaQueue:
    """The queue over a connection pool; every method is one short transaction."""

    def __init__(self, pool: ConnectionPool, bucket: str) -> None:
        self.pool = pool
        self.bucket = bucket

    def backlog(self) -> int:
        """Jobs waiting (pending or purge)."""
        with self.pool.connection() as conn:
            return int(scalar(conn.execute(BACKLOG_SQL)))

    def dead(self) -> int:
        with self.pool.connection() as conn:
            return int(scalar(conn.execute(DEAD_SQL)))

    def claim(self, limit: int) -> list[Job]:
        with self.pool.connection() as conn:
            rows = conn.execute(CLAIM_SQL, {"lease": LEASE_SECONDS, "limit": limit}).fetchall()
        return [Job(*row) for row in rows]

    def extend_leases(self, ids: list[int]) -> None:
        with self.pool.connection() as conn:
            conn.execute(EXTEND_LEASES_SQL, {"lease": LEASE_SECONDS, "ids": ids})

    def release(self, ids: list[int]) -> None:
        """Claimed jobs never started: due again now (no attempt used), for any uploader."""
        with self.pool.connection() as conn:
            conn.execute(RELEASE_SQL, {"ids": ids})

    def reschedule(self, job: Job, plan: Reschedule, reason: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(RESCHEDULE_SQL, {"id": job.id, "state": plan.state, "counted": plan.counted,
                                          "error": reason[:1000], "delay": plan.delay})

    def record(self, job: Job, upload: Upload, *, analysis: bool, delete: DeleteObject) -> Recorded:
        """Mark the job done and record its file, unless the object was deleted or the job lost meanwhile.

        One round trip (BEGIN, the lock, RECORD_UPLOAD_SQL, COMMIT) besides the pool's check
        of the connection. A lost job wrote nothing there; what to take back is decided
        again under the object's lock, in a transaction of its own (rare: the job was
        purged while we uploaded, or finished by another uploader after our lease ran out)."""
        with self.pool.connection() as conn:
            with pipelined_transaction(conn):
                _lock_object(conn, upload.object_path)
                recorded = conn.execute(RECORD_UPLOAD_SQL, {
                    "id": job.id, "claimed_at": job.claimed_at, "event_id": job.event_id,
                    "media_type": media_type_label(job.media_type), "original_filename": upload.filename,
                    "file_size": upload.size, "mime_type": upload.mime_type, "matrix_url": job.matrix_url,
                    "storage_bucket": self.bucket, "storage_path": upload.object_path,
                    "public_url": upload.public_url, "media_kind": job.media_kind, "sha256": upload.sha256,
                    "encrypted": job.encrypted_file is not None, "analysis": analysis and job.media_kind == "file",
                })
            media_id, again = recorded.fetchone() or (None, False)
            if media_id is not None:
                return Recorded.DONE
            if again:
                return Recorded.AGAIN
            with conn.transaction():
                _lock_object(conn, upload.object_path)
                self._release_lost_job(conn, job, upload.object_path, delete)
            return Recorded.LOST

    def _release_lost_job(self, conn: psycopg.Connection, job: Job, object_path: str, delete: DeleteObject) -> None:
        """The job left 'pending' while we uploaded: purged (take our copy back out) or
        finished by an uploader that claimed it after our lease ran out (keep it)."""
        row = conn.execute(JOB_STATE_SQL, {"id": job.id}).fetchone()
        state = row[0] if row else None
        if should_delete_object(state, self._still_used(conn, job, object_path)) and delete(object_path):
            conn.execute(OBJECT_DELETED_SQL, {"id": job.id})

    def purge(self, job: Job, delete: Callable[[str], None]) -> None:
        """Drop a redacted message's archived file; the object goes only if nothing else uses it.

        `delete` raises when storage refuses; the job then stays leased and is tried again.
        """
        path = job.object_path
        with self.pool.connection() as conn, conn.transaction():
            _lock_object(conn, path)
            if should_delete_object(job.state, self._still_used(conn, job, path)):
                delete(path)
                conn.execute(OBJECT_DELETED_SQL, {"id": job.id})
            conn.execute(PURGED_SQL, {"id": job.id})

    def _still_used(self, conn: psycopg.Connection, job: Job, object_path: str) -> bool:
        return bool(scalar(conn.execute(LIVE_REFERENCE_SQL, {
            "matrix_url": job.matrix_url, "media_kind": job.media_kind, "id": job.id, "event_id": job.event_id,
            "bucket": self.bucket, "path": object_path,
        })))


def _lock_object(conn: psycopg.Connection, object_path: str) -> None:
    """Serialise deleting an object with recording an upload of it (held until commit)."""
    conn.execute(OBJECT_LOCK_SQL, {"space": OBJECT_LOCK_SPACE, "path": object_path})


# -- one-off commands (status, media-retry) -------------------------------------------

def retry_dead(conn: psycopg.Connection) -> int:
    """Queue every dead-lettered job again; how many."""
    return len(retry_dead_jobs(conn))


def retry_dead_jobs(conn: psycopg.Connection) -> list[int]:
    """Queue every dead-lettered job again; their ids."""
    return [row[0] for row in conn.execute(RETRY_DEAD_SQL).fetchall()]


def job_counts(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute(STATE_COUNTS_SQL).fetchall())


def last_dead_reason(conn: psycopg.Connection) -> str | None:
    row = conn.execute(LAST_DEAD_SQL).fetchone()
    return row[0] if row else None
