"""Durable cursors: read when a source starts, moved only with the rows they cover.

store_cursor runs inside the batch's transaction (archive/batches.py), so a
crash before COMMIT leaves the cursor where it was and the batch is read again
(DESIGN.md invariant 2). A stream cursor never moves backwards: the direction it
carries picks GREATEST or LEAST, so a stale batch can never move a cursor back
over rows stored since.
"""
from __future__ import annotations

from collections.abc import Callable

import psycopg

from mxarchiverd.archive.sync_state import store_page, store_sync
from mxarchiverd.pipeline.cursors import (
    Cursor, DecryptionCursor, Direction, PageCursor, RoomHistoryCursor, StreamCursor, SyncCursor,
)

LOAD_STREAMS_SQL = "SELECT stream, position FROM archive_cursors"

ADVANCE_STREAM_SQL = """
INSERT INTO archive_cursors (stream, position) VALUES (%(stream)s, %(position)s)
ON CONFLICT (stream) DO UPDATE
   SET position = CASE WHEN %(downward)s THEN LEAST(archive_cursors.position, EXCLUDED.position)
                       ELSE GREATEST(archive_cursors.position, EXCLUDED.position) END,
       updated_at = NOW()
"""

ADVANCE_ROOM_HISTORY_SQL = """
UPDATE monitored_rooms SET history_cursor = GREATEST(COALESCE(history_cursor, %(position)s), %(position)s),
       history_done = %(done)s, updated_at = NOW()
 WHERE room_id = %(room_id)s
"""


def load_stream_cursors(conn: psycopg.Connection) -> dict[str, int]:
    """stream name -> durable position, for every stream that has one."""
    return {stream: int(position) for stream, position in conn.execute(LOAD_STREAMS_SQL).fetchall()}


def _store_stream(conn: psycopg.Connection, cursor: StreamCursor) -> None:
    conn.execute(ADVANCE_STREAM_SQL, {"stream": cursor.stream, "position": cursor.position,
                                      "downward": cursor.direction is Direction.DOWN})


def _store_room_history(conn: psycopg.Connection, cursor: RoomHistoryCursor) -> None:
    conn.execute(ADVANCE_ROOM_HISTORY_SQL, {"room_id": cursor.room_id, "position": cursor.position,
                                            "done": cursor.done})


_STORE: dict[type, Callable[[psycopg.Connection, Cursor], None]] = {
    StreamCursor: _store_stream,  # type: ignore[dict-item]
    RoomHistoryCursor: _store_room_history,  # type: ignore[dict-item]
    SyncCursor: store_sync,  # type: ignore[dict-item]
    PageCursor: store_page,  # type: ignore[dict-item]
    # Nothing to move: the decrypted rows are the whole of it.
    DecryptionCursor: lambda conn, cursor: None,
}


def store_cursor(conn: psycopg.Connection, cursor: Cursor) -> None:
    """Move a durable cursor; call inside the transaction that stores the rows it covers."""
    _STORE[type(cursor)](conn, cursor)
