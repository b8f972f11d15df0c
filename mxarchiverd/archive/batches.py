"""Write one batch into the archive database: rows, media jobs, relations, cursor.

Everything for a batch happens in ONE transaction, including the cursor move
(DESIGN.md invariant 2): a crash before COMMIT leaves nothing, and the batch is
read again from the old cursor; a crash after it leaves everything. Rows are
keyed by event_id, so a batch delivered twice has the effect of once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from mxarchiverd.archive import batch_sql as sql
from mxarchiverd.archive.batch_sql import ROW_COLUMNS
from mxarchiverd.archive.cursors import store_cursor
from mxarchiverd.archive.leadership import Fence, check_fence
from mxarchiverd.pipeline.messages import ArchiveRow, RoomSummary, RowBatch

log = logging.getLogger(__name__)
_ROW_KEYS = tuple(name for name, _ in ROW_COLUMNS)
QUARANTINE_PREFIXES = ("invalid JSON", "event JSON is", "could not classify")


@dataclass(frozen=True)
class BatchResult:
    inserted: int
    redacted: int


def write_batch(conn: psycopg.Connection, batch: RowBatch, *, purge: bool, fence: Fence | None = None) -> BatchResult:
    """Store a batch from the enricher and move its cursor, atomically.

    fence (daemon.ha): raises Fenced, having written nothing, once another daemon leads."""
    rows = batch.rows
    ids = [row["event_id"] for row in rows]
    with conn.transaction():
        check_fence(conn, fence)
        inserted = _insert_rows(conn, rows)
        _note_decryption(conn, rows)
        _insert_media_jobs(conn, rows)
        redacted = _apply_redactions(conn, ids, purge)
        edit_targets = ids + [r["relates_to_event_id"] for r in rows if r["relation_type"] == "m.replace"]
        edit_targets += [target for _, relation, target in redacted if relation == "m.replace" and target]
        conn.execute(sql.APPLY_EDITS, {"ids": edit_targets, "purge": purge})
        _upsert_rooms(conn, batch.rooms)
        _quarantine(conn, rows)
        store_cursor(conn, batch.cursor)
    return BatchResult(inserted, len(redacted))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _insert_rows(conn: psycopg.Connection, rows: list[ArchiveRow]) -> int:
    if not rows:
        return 0
    payload = [{key: row.get(key) for key in _ROW_KEYS} for row in rows]
    return conn.execute(sql.INSERT_ROWS, (_json(payload),)).rowcount


def _note_decryption(conn: psycopg.Connection, rows: list[ArchiveRow]) -> None:
    """Ciphertext waiting for its key is listed; ciphertext now decrypted is taken off the list."""
    pending = [{"event_id": row["event_id"], "room_id": row["room_id"], **row["pending_decryption"]}
               for row in rows if row.get("pending_decryption")]
    if pending:
        conn.execute(sql.PENDING_DECRYPTION, (_json(pending),))
    decrypted = [row["event_id"] for row in rows if row.get("decrypted")]
    if decrypted:
        conn.execute(sql.DECRYPTED_NOW, {"ids": decrypted})


def _insert_media_jobs(conn: psycopg.Connection, rows: list[ArchiveRow]) -> None:
    jobs = [{**ref, "event_id": row["event_id"]} for row in rows for ref in row.get("media", ())]
    if jobs:
        conn.execute(sql.INSERT_MEDIA_JOBS, (_json(jobs),))


def _apply_redactions(conn: psycopg.Connection, ids: list[str], purge: bool) -> list[tuple[str, str | None, str | None]]:
    redacted = conn.execute(sql.APPLY_REDACTIONS, {"ids": ids}).fetchall()
    if purge and redacted:
        targets = [event_id for event_id, _, _ in redacted]
        purged = [r[0] for r in conn.execute(sql.PURGE_CONTENT, {"ids": targets}).fetchall()]
        conn.execute(sql.PURGE_MEDIA, {"ids": purged})
    return redacted


def _upsert_rooms(conn: psycopg.Connection, rooms: list[RoomSummary]) -> None:
    if rooms:
        conn.execute(sql.UPSERT_ROOMS, (_json(rooms),))


def _quarantine(conn: psycopg.Connection, rows: list[ArchiveRow]) -> None:
    bad = [row for row in rows if row.get("archive_problem")]
    for row in bad:
        log.warning("event %s in %s stored with a problem: %s", row["event_id"], row["room_id"], row["archive_problem"],
                    extra={"room_id": row["room_id"], "event_id": row["event_id"]})
    held = [_quarantine_entry(row) for row in bad if row["archive_problem"].startswith(QUARANTINE_PREFIXES)]
    if held:
        conn.execute(sql.QUARANTINE, (_json(held),))


def _quarantine_entry(row: ArchiveRow) -> dict[str, Any]:
    return {"event_id": row["event_id"], "room_id": row["room_id"], "stream_ordering": row["stream_ordering"],
            "reason": row["archive_problem"], "raw_json": row["event_raw"]}
