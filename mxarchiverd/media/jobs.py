"""Media jobs in the archive database: claim with a lease, finish, retry, dead-letter.

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

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mxarchiverd.media.paths import parse_mxc, storage_object_path

LEASE_SECONDS = 120
TRANSIENT_MAX_DELAY = 300.0

CLAIM_SQL = """
UPDATE media_jobs j SET next_attempt_at = NOW() + make_interval(secs => %(lease)s), updated_at = NOW()
 WHERE j.id IN (SELECT id FROM media_jobs WHERE state IN ('pending', 'purge') AND next_attempt_at <= NOW()
                 ORDER BY next_attempt_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING j.id, j.event_id, j.media_kind, j.matrix_url, j.encrypted_file, j.media_type,
          j.original_filename, j.mime_type, j.declared_size, j.state, j.attempts, NOW()
"""
EXTEND_LEASES_SQL = """
UPDATE media_jobs SET next_attempt_at = NOW() + make_interval(secs => %(lease)s)
 WHERE id = ANY(%(ids)s) AND state IN ('pending', 'purge')
"""
MARK_DONE_SQL = """
UPDATE media_jobs SET state = 'done', last_error = NULL, updated_at = NOW()
 WHERE id = %(id)s AND state = 'pending' RETURNING id
"""
RECORD_MEDIA_SQL = """
INSERT INTO archived_media (event_id, media_type, original_filename, file_size, mime_type, matrix_url,
                            storage_bucket, storage_path, public_url, media_kind, sha256, encrypted)
VALUES (%(event_id)s, %(media_type)s, %(original_filename)s, %(file_size)s, %(mime_type)s, %(matrix_url)s,
        %(storage_bucket)s, %(storage_path)s, %(public_url)s, %(media_kind)s, %(sha256)s, %(encrypted)s)
ON CONFLICT (event_id, media_kind, matrix_url) DO UPDATE
   SET file_size = EXCLUDED.file_size, mime_type = EXCLUDED.mime_type, sha256 = EXCLUDED.sha256,
       storage_path = EXCLUDED.storage_path, public_url = EXCLUDED.public_url, updated_at = NOW()
RETURNING id
"""
ANALYSIS_JOB_SQL = """
INSERT INTO analysis_jobs (media_id, event_id, storage_bucket, storage_path, mime_type)
VALUES (%(media_id)s, %(event_id)s, %(storage_bucket)s, %(storage_path)s, %(mime_type)s)
ON CONFLICT (media_id) DO NOTHING
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
DELETED_SINCE_SQL = """
SELECT EXISTS (SELECT 1 FROM media_jobs
                WHERE matrix_url = %(matrix_url)s AND media_kind = %(media_kind)s
                  AND object_deleted_at >= %(claimed_at)s)
"""
BACKLOG_SQL = "SELECT count(*) FROM media_jobs WHERE state IN ('pending', 'purge')"
DEAD_SQL = "SELECT count(*) FROM media_jobs WHERE state = 'dead'"
LAST_DEAD_SQL = "SELECT last_error FROM media_jobs WHERE state = 'dead' ORDER BY updated_at DESC LIMIT 1"
RETRY_DEAD_SQL = """
UPDATE media_jobs SET state = 'pending', attempts = 0, last_error = NULL, next_attempt_at = NOW(), updated_at = NOW()
 WHERE state = 'dead' RETURNING id
"""

FailureKind = Literal["refused", "transient", "counted"]


@dataclass(frozen=True)
class Job:
    id: int
    event_id: str
    media_kind: str
    matrix_url: str
    encrypted_file: dict[str, Any] | None
    media_type: str
    original_filename: str | None
    mime_type: str | None
    declared_size: int | None
    state: str
    attempts: int
    claimed_at: datetime | None = None  # the archive database's clock at the claim

    @property
    def object_path(self) -> str:
        """The storage key this job writes; jobs of the same mxc and kind share it."""
        kind = "original" if self.media_kind == "file" else "thumbnail"
        return storage_object_path(parse_mxc(self.matrix_url), kind)


@dataclass(frozen=True)
class Reschedule:
    state: str
    counted: int
    delay: float


def plan_failure(kind: FailureKind, attempts: int, retry_attempts: int, retry_delay: float) -> Reschedule:
    """What a failed job becomes.

    refused: never retried (policy, unsafe mxc, storage said 413/415).
    transient: storage or network trouble; retried without using up attempts, so an
    outage of any length loses nothing. counted: anything else; after retry_attempts
    the job is dead-lettered (`mxarchiverd media-retry` revives it).
    """
    if kind == "refused":
        return Reschedule("refused", 0, 0.0)
    if kind == "transient":
        return Reschedule("pending", 0, min(retry_delay, TRANSIENT_MAX_DELAY))
    if attempts + 1 >= retry_attempts:
        return Reschedule("dead", 1, 0.0)
    return Reschedule("pending", 1, retry_delay * 2 ** attempts)


def should_delete_object(job_state: str | None, live_reference: bool) -> bool:
    """Whether an uploader may delete the object of a job it no longer owns.

    Only a purged job gives its object up (None: the job row itself is gone); one
    finished by another uploader whose lease outlived ours is done and keeps it.
    Even then the object stays while anything else still uses it: a forward of the
    same mxc has the same object.
    """
    return job_state in (None, "purge", "purged") and not live_reference


def media_type_label(media_type: str) -> str:
    """archived_media.media_type: image, video, audio, file, sticker."""
    return media_type.removeprefix("m.")
