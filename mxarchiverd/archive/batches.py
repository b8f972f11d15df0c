"""Write one batch into the archive database: rows, media jobs, relations, cursor.

Everything for a batch happens in ONE transaction, including the cursor move
(DESIGN.md invariant 2): a crash before COMMIT leaves nothing, and the batch is
read again from the old cursor; a crash after it leaves everything. Rows are
keyed by event_id, so a batch delivered twice has the effect of once.

The archive is Supabase, across a network: each round trip costs its RTT, so a
batch is ONE round trip. `batch_statements` (pure) lists the statements, none of
which needs another's result on the client (archive/batch_sql.py), and
`write_batch` sends BEGIN, all of them, the cursor's and COMMIT in psycopg's
pipeline mode, then waits once. When any statement fails the server skips the rest, COMMIT
included, and the transaction is rolled back: still all or nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from mxarchiverd.archive import batch_sql as sql
from mxarchiverd.archive.batch_sql import ROW_COLUMNS
from mxarchiverd.archive.connection import pipelined_transaction
from mxarchiverd.archive.cursors import store_cursor
from mxarchiverd.archive.leadership import Fence, fence_statement, fenced_by
from mxarchiverd.pipeline.messages import ArchiveRow, RowBatch

log = logging.getLogger(__name__)
_ROW_KEYS = tuple(name for name, _ in ROW_COLUMNS)
_CONTENT, _EVENT = sql.CONTENT_FROM_EVENT
_CONTENT_AT = _ROW_KEYS.index(_CONTENT)
QUARANTINE_PREFIXES = ("invalid JSON", "event JSON is", "could not classify")

# Names of the statements whose results write_batch reads.
ROWS, REDACTIONS = "rows", "redactions"


@dataclass(frozen=True)
class Statement:
    name: str
    sql: str
    params: Any


@dataclass(frozen=True)
class BatchResult:
    inserted: int
    redacted: int


def write_batch(conn: psycopg.Connection, batch: RowBatch, *, purge: bool, fence: Fence | None = None) -> BatchResult:
    """Store a batch from the enricher and move its cursor, atomically.

    On an autocommit connection with no transaction open (the dbwriter's) the batch
    is one round trip; inside a caller's transaction it is a savepoint of it.
    fence (daemon.ha): raises Fenced, having written nothing, once another daemon leads."""
    statements = batch_statements(batch, purge=purge, fence=fence)
    _log_problems(batch.rows)
    try:
        with pipelined_transaction(conn):
            cursors = {s.name: conn.execute(s.sql, s.params) for s in statements}
            store_cursor(conn, batch.cursor)
    except psycopg.Error as exc:
        fenced = fenced_by(exc, fence)
        if fenced is None:
            raise
        raise fenced from None
    inserted = cursors[ROWS].rowcount if ROWS in cursors else 0
    return BatchResult(inserted, len(cursors[REDACTIONS].fetchall()))


def batch_statements(batch: RowBatch, *, purge: bool, fence: Fence | None) -> list[Statement]:
    """The batch's statements in order (the fence check first), without the transaction and
    the cursor's (archive/cursors.py: a stream cursor is one more statement; a bot's
    pagination cursor reads its job's row back, one more round trip)."""
    rows = batch.rows
    ids = [row["event_id"] for row in rows]
    redacts = [row["redacts"] for row in rows if row.get("redacts")]
    redactions = [row["event_id"] for row in rows if row["event_type"] == "m.room.redaction"]
    # Edit targets: the batch's messages (an edit may have come first) and what its edits replace.
    edit_targets = [row["event_id"] if row["relation_type"] != "m.replace" else row["relates_to_event_id"]
                    for row in rows if row["event_type"] == "m.room.message"]
    found: list[Statement | None] = [
        Statement("fence", *fence_statement(fence)) if fence is not None else None,
        Statement("plans", sql.INDEX_PLANS, None),
        Statement(ROWS, sql.INSERT_ROWS, (_payload(batch),)) if rows else None,
        *_decryption_statements(rows),
        _media_jobs_statement(rows),
        Statement(REDACTIONS, sql.APPLY_REDACTIONS, {"ids": ids, "redactions": redactions}),
        Statement("purge", sql.PURGE_REDACTED, {"ids": ids, "redacts": redacts}) if purge else None,
        Statement("edits", sql.APPLY_EDITS, {"ids": edit_targets, "redacts": redacts, "purge": purge}),
        Statement("rooms", sql.UPSERT_ROOMS, (_json(batch.rooms),)) if batch.rooms else None,
        _quarantine_statement(rows),
    ]
    return [s for s in found if s is not None]


# What the dbwriter reads of a row besides its INSERT payload: the other statements'
# inputs, the problem log line and the metrics (event_raw too, for a row with a problem).
LIGHT_KEYS = ("event_id", "room_id", "event_type", "timestamp", "stream_ordering", "relation_type",
              "relates_to_event_id", "redacts", "media", "pending_decryption", "decrypted", "archive_problem")


def encoded(batch: RowBatch) -> RowBatch:
    """The batch as the enricher hands it on: its INSERT payload encoded once, here, and its
    rows cut down to what the dbwriter still reads. The dbwriter then neither decodes the
    rows' content from the queue nor encodes it again."""
    if batch.encoded_rows is not None:
        return batch
    return RowBatch(batch.cursor, [_light(row) for row in batch.rows], batch.rooms, orjson.dumps(_row_payload(batch.rows)))


def _light(row: ArchiveRow) -> ArchiveRow:
    light = {key: row.get(key) for key in LIGHT_KEYS}
    if row.get("archive_problem"):
        light["event_raw"] = row.get("event_raw")
    return light


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _payload(batch: RowBatch) -> Jsonb:
    """The rows as one jsonb parameter, their UTF-8 JSON sent as it is (text format)."""
    encoded = batch.encoded_rows if batch.encoded_rows is not None else orjson.dumps(_row_payload(batch.rows))
    return Jsonb(encoded, dumps=_as_is)


def _as_is(encoded: bytes) -> bytes:
    return encoded


def _row_payload(rows: list[ArchiveRow]) -> list[list[Any]]:
    """Each row's values in ROW_COLUMNS order (archive/batch_sql.py INSERT_ROWS), its
    content left out when it is the event's own (classify puts the same object in both)."""
    return [_row_values(row) for row in rows]


def _row_values(row: ArchiveRow) -> list[Any]:
    values = [row.get(key) for key in _ROW_KEYS]
    event = row.get(_EVENT)
    if isinstance(event, dict) and values[_CONTENT_AT] is event.get("content"):
        values[_CONTENT_AT] = None
    return values


def _decryption_statements(rows: list[ArchiveRow]) -> list[Statement | None]:
    """Ciphertext waiting for its key is listed; ciphertext now decrypted is taken off the list."""
    pending = [{"event_id": row["event_id"], "room_id": row["room_id"], **row["pending_decryption"]}
               for row in rows if row.get("pending_decryption")]
    decrypted = [row["event_id"] for row in rows if row.get("decrypted")]
    return [Statement("pending", sql.PENDING_DECRYPTION, (_json(pending),)) if pending else None,
            Statement("decrypted", sql.DECRYPTED_NOW, {"ids": decrypted}) if decrypted else None]


def _media_jobs_statement(rows: list[ArchiveRow]) -> Statement | None:
    jobs = [{**ref, "event_id": row["event_id"]} for row in rows for ref in row.get("media", ())]
    return Statement("media", sql.INSERT_MEDIA_JOBS, (_json(jobs),)) if jobs else None


def _quarantine_statement(rows: list[ArchiveRow]) -> Statement | None:
    held = [_quarantine_entry(row) for row in rows
            if row.get("archive_problem") and row["archive_problem"].startswith(QUARANTINE_PREFIXES)]
    return Statement("quarantine", sql.QUARANTINE, (_json(held),)) if held else None


def _log_problems(rows: list[ArchiveRow]) -> None:
    for row in rows:
        if row.get("archive_problem"):
            log.warning("event %s in %s stored with a problem: %s", row["event_id"], row["room_id"],
                        row["archive_problem"], extra={"room_id": row["room_id"], "event_id": row["event_id"]})


def _quarantine_entry(row: ArchiveRow) -> dict[str, Any]:
    return {"event_id": row["event_id"], "room_id": row["room_id"], "stream_ordering": row["stream_ordering"],
            "reason": row["archive_problem"], "raw_json": row["event_raw"]}
