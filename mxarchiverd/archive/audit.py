"""The archive's side of `verify` and what `verify --repair` and `backfill` change.

Read-only facts first (per room: which rows are redacted, the content of edited
originals; the media references, their jobs and stored files), then the few
writes a repair needs that the normal pipeline does not make: queueing media
jobs again, clearing a redaction mark Synapse never made, resetting a room's
history read, and the record of each verify run. Events themselves are repaired
through the normal pipeline (archive/batches.write_batch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import psycopg

from mxarchiverd.archive.rooms import RoomEntry

ROOM_ROWS_SQL = """
SELECT event_id, redacted IS TRUE, redaction_event_id FROM archived_messages
 WHERE room_id = %(room_id)s AND (%(since)s::bigint IS NULL OR timestamp >= %(since)s)
"""
CONTENT_SQL = """
SELECT event_id, content, event -> 'content', redacted IS TRUE, edited_at IS NOT NULL, event_type
  FROM archived_messages
 WHERE event_id = ANY(%(ids)s)
    OR (room_id = %(room_id)s AND edited_at IS NOT NULL AND (%(since)s::bigint IS NULL OR timestamp >= %(since)s))
"""


@dataclass(frozen=True)
class ArchivedContent:
    """What an original message shows in the archive, and what it was sent with."""

    event_id: str
    content: Any
    original_content: Any
    redacted: bool
    edited: bool
    event_type: str | None


class ArchivedRow(NamedTuple):
    redacted: bool
    redaction_event_id: str | None = None  # the redaction the archive applied


def room_rows(conn: psycopg.Connection, room_id: str, since_ms: int | None) -> dict[str, ArchivedRow]:
    """Every archived row of the room (sent since `since_ms`) and its redaction."""
    rows = conn.execute(ROOM_ROWS_SQL, {"room_id": room_id, "since": since_ms}).fetchall()
    return {event_id: ArchivedRow(redacted, by) for event_id, redacted, by in rows}


def contents(conn: psycopg.Connection, room_id: str, event_ids: list[str],
             since_ms: int | None) -> dict[str, ArchivedContent]:
    """The named rows, and every row of the room the archive shows as edited."""
    rows = conn.execute(CONTENT_SQL, {"ids": event_ids, "room_id": room_id, "since": since_ms}).fetchall()
    return {row[0]: ArchivedContent(*row) for row in rows}


# -- media -------------------------------------------------------------------------

# Rows that can carry attachments (classify.media_refs): media messages, stickers and
# edits (an m.new_content may bring its own file); purged rows have no content left.
MEDIA_ROWS_SQL = """
SELECT m.event_id, m.room_id, m.event_type, m.event -> 'content'
  FROM archived_messages m
 WHERE (m.event_type = 'm.sticker'
        OR (m.event_type = 'm.room.message'
            AND (m.message_type IN ('m.image', 'm.video', 'm.audio', 'm.file') OR m.relation_type = 'm.replace')))
   AND m.event IS NOT NULL
   AND (%(rooms)s::text[] IS NULL OR m.room_id = ANY(%(rooms)s))
   AND (%(since)s::bigint IS NULL OR m.timestamp >= %(since)s)
"""
MEDIA_JOBS_SQL = """
SELECT j.id, j.event_id, m.room_id, j.media_kind, j.matrix_url, j.state, j.last_error, j.declared_size,
       a.file_size, a.sha256, a.storage_path, a.id IS NOT NULL
  FROM media_jobs j
  JOIN archived_messages m ON m.event_id = j.event_id
  LEFT JOIN archived_media a
         ON a.event_id = j.event_id AND a.media_kind = j.media_kind AND a.matrix_url = j.matrix_url
 WHERE (%(rooms)s::text[] IS NULL OR m.room_id = ANY(%(rooms)s))
   AND (%(since)s::bigint IS NULL OR m.timestamp >= %(since)s)
 ORDER BY j.id
"""
REQUEUE_SQL = """
UPDATE media_jobs SET state = 'pending', attempts = 0, last_error = NULL, next_attempt_at = NOW(), updated_at = NOW()
 WHERE id = ANY(%(ids)s) AND state IN ('done', 'dead') RETURNING id
"""


@dataclass(frozen=True)
class MediaRow:
    event_id: str
    room_id: str
    event_type: str
    content: Any


@dataclass(frozen=True)
class MediaJobFact:
    """A media job and the file archived_media records for it (if any)."""

    id: int
    event_id: str
    room_id: str
    kind: str
    matrix_url: str
    state: str
    last_error: str | None
    declared_size: int | None
    file_size: int | None
    sha256: str | None
    storage_path: str | None
    recorded: bool


def media_rows(conn: psycopg.Connection, rooms: list[str] | None, since_ms: int | None) -> list[MediaRow]:
    params = {"rooms": rooms, "since": since_ms}
    return [MediaRow(*row) for row in conn.execute(MEDIA_ROWS_SQL, params).fetchall()]


def media_jobs(conn: psycopg.Connection, rooms: list[str] | None, since_ms: int | None) -> list[MediaJobFact]:
    params = {"rooms": rooms, "since": since_ms}
    return [MediaJobFact(*row) for row in conn.execute(MEDIA_JOBS_SQL, params).fetchall()]


def requeue_media_jobs(conn: psycopg.Connection, job_ids: list[int]) -> int:
    """Done or dead jobs back to pending with fresh attempts; the uploader stores them again."""
    if not job_ids:
        return 0
    return len(conn.execute(REQUEUE_SQL, {"ids": job_ids}).fetchall())


# -- redactions the archive applied and Synapse did not ------------------------------

CLEAR_REDACTION_SQL = """
UPDATE archived_messages
   SET redacted = FALSE, redacted_at = NULL, redacted_by = NULL, redaction_reason = NULL,
       redaction_event_id = NULL, updated_at = NOW()
 WHERE event_id = ANY(%(ids)s) AND redacted IS TRUE
RETURNING event_id
"""


def clear_redactions(conn: psycopg.Connection, event_ids: list[str]) -> list[str]:
    """Take back redaction marks that Synapse's own records do not support."""
    if not event_ids:
        return []
    return [row[0] for row in conn.execute(CLEAR_REDACTION_SQL, {"ids": event_ids}).fetchall()]


# -- backfill: one room's history read again ------------------------------------------

RESET_HISTORY_SQL = """
UPDATE monitored_rooms
   SET history_cursor = CASE WHEN history_done THEN NULL ELSE history_cursor END,
       history_upto = GREATEST(history_upto, %(upto)s), history_done = FALSE, updated_at = NOW()
 WHERE room_id = %(room_id)s
RETURNING room_id, COALESCE(enabled, TRUE), backfill, added_at_stream, history_upto, history_cursor,
          history_done, discovered_by
"""
ROOM_SQL = """
SELECT room_id, COALESCE(enabled, TRUE), backfill, added_at_stream, history_upto, history_cursor,
       history_done, discovered_by
  FROM monitored_rooms WHERE room_id = %s
"""


def room_entry(conn: psycopg.Connection, room_id: str) -> RoomEntry | None:
    row = conn.execute(ROOM_SQL, (room_id,)).fetchone()
    return RoomEntry(*row) if row else None


def reset_room_history(conn: psycopg.Connection, room_id: str, upto: int) -> RoomEntry | None:
    """Mark a room's history to be read again up to `upto`; a read already under way
    (history_done false) keeps its cursor, so a second backfill resumes the first."""
    row = conn.execute(RESET_HISTORY_SQL, {"room_id": room_id, "upto": upto}).fetchone()
    return RoomEntry(*row) if row else None


# -- the record of verify runs (metrics read the latest) -------------------------------

RECORD_RUN_SQL = """
INSERT INTO verify_runs (source_mode, scope, rooms_checked, problems, repaired, exit_code)
VALUES (%(mode)s, %(scope)s::jsonb, %(rooms)s, %(problems)s::jsonb, %(repaired)s::jsonb, %(exit_code)s)
"""
LATEST_RUN_SQL = """
SELECT extract(epoch FROM finished_at), rooms_checked, problems, exit_code
  FROM verify_runs ORDER BY finished_at DESC, id DESC LIMIT 1
"""


@dataclass(frozen=True)
class VerifyRun:
    finished_at: float
    rooms_checked: int
    problems: dict[str, int]
    exit_code: int


def record_verify_run(conn: psycopg.Connection, *, mode: str, scope: dict[str, Any], rooms: int,
                      problems: dict[str, int], repaired: dict[str, int] | None, exit_code: int) -> None:
    conn.execute(RECORD_RUN_SQL, {
        "mode": mode, "scope": orjson.dumps(scope).decode(), "rooms": rooms,
        "problems": orjson.dumps(problems).decode(),
        "repaired": orjson.dumps(repaired).decode() if repaired is not None else None, "exit_code": exit_code})


def latest_verify_run(conn: psycopg.Connection) -> VerifyRun | None:
    row = conn.execute(LATEST_RUN_SQL).fetchone()
    return VerifyRun(float(row[0]), int(row[1]), dict(row[2] or {}), int(row[3])) if row else None


def quarantined_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM quarantined_events").fetchone()
    return int(row[0]) if row else 0


JOB_STATES_SQL = "SELECT state, count(*) FROM media_jobs WHERE id = ANY(%(ids)s) GROUP BY state"


def job_states(conn: psycopg.Connection, job_ids: list[int]) -> dict[str, int]:
    """state -> how many of these jobs are in it (media-retry --wait follows them)."""
    return dict(conn.execute(JOB_STATES_SQL, {"ids": job_ids}).fetchall())


# An original whose every edit is gone (redacted, or none was valid) shows what it was
# sent with; write_batch leaves such rows alone when they carry no edited_at.
RESTORE_ORIGINAL_SQL = """
UPDATE archived_messages
   SET content = COALESCE(event -> 'content', original_content, content), edited_at = NULL, updated_at = NOW()
 WHERE event_id = ANY(%(ids)s) AND event_type = 'm.room.message'
RETURNING event_id
"""


def restore_original_contents(conn: psycopg.Connection, event_ids: list[str]) -> list[str]:
    if not event_ids:
        return []
    return [row[0] for row in conn.execute(RESTORE_ORIGINAL_SQL, {"ids": event_ids}).fetchall()]


# Bot mode: a history job from the live end (no from token) back to m.room.create,
# unless the room has one pending already (then that one is the answer).
QUEUE_HISTORY_SQL = """
INSERT INTO room_pagination (id, room_id, kind, from_token, resume_token)
SELECT %(id)s, %(room_id)s, 'history', NULL, NULL
 WHERE NOT EXISTS (SELECT 1 FROM room_pagination
                    WHERE room_id = %(room_id)s AND kind = 'history' AND state = 'pending')
RETURNING id
"""
PENDING_HISTORY_SQL = """
SELECT id FROM room_pagination WHERE room_id = %(room_id)s AND kind = 'history' AND state = 'pending'
 ORDER BY created_at LIMIT 1
"""


def queue_history_job(conn: psycopg.Connection, room_id: str, job_id: str) -> tuple[str, bool]:
    """(the room's pending history job, whether it was queued now)."""
    made = conn.execute(QUEUE_HISTORY_SQL, {"id": job_id, "room_id": room_id}).fetchone()
    if made:
        return str(made[0]), True
    row = conn.execute(PENDING_HISTORY_SQL, {"room_id": room_id}).fetchone()
    assert row is not None
    return str(row[0]), False
