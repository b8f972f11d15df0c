"""Batches waiting in the dbwriter's queue, merged into fewer transactions (pure).

Every transaction costs the archive's round-trip time at least once (Supabase
is across a network) and a commit. When the dbwriter falls behind, batches queue
up in front of it; writing those that can share a transaction as one makes the
batch as large as the backlog, up to a limit, without any setting: far from the
archive, or in a first backfill, transactions grow; live, with nothing queued,
each batch is written as it comes, with no added latency.

Two batches can share a transaction only when one cursor stands for both: the
later position of the same stream (or of the same room's history read). Their
rows then have the effect that one batch read over both stretches would have.
"""
from __future__ import annotations

from mxarchiverd.pipeline.cursors import Cursor, RoomHistoryCursor, StreamCursor
from mxarchiverd.pipeline.messages import RoomSummary, RowBatch


def covering(earlier: Cursor, later: Cursor) -> Cursor | None:
    """The cursor that covers both batches, or None when they cannot share a transaction."""
    if isinstance(earlier, StreamCursor) and isinstance(later, StreamCursor):
        if (earlier.stream, earlier.direction) != (later.stream, later.direction):
            return None
        return StreamCursor(later.stream, later.direction.further(earlier.position, later.position), later.direction)
    if isinstance(earlier, RoomHistoryCursor) and isinstance(later, RoomHistoryCursor):
        if earlier.room_id != later.room_id:
            return None
        return RoomHistoryCursor(later.room_id, max(earlier.position, later.position), later.done)
    # A /sync, a /messages page, a repair or a decryption carries more than a position
    # (tokens, jobs, holes): each is stored with its own rows.
    return None


# Encoded rows of one merged transaction at most: what the dbwriter holds of it, a few
# times over (the parameter, psycopg's and libpq's copies), stays small.
MAX_ENCODED_BYTES = 4 * 1024 * 1024


def merge_batches(batches: list[RowBatch], max_rows: int, max_bytes: int = MAX_ENCODED_BYTES) -> list[RowBatch]:
    """Consecutive batches merged while one cursor covers them and the rows fit `max_rows`
    (and their encoded rows `max_bytes`).

    Order is kept; a batch larger than the limits on its own is passed on whole.
    """
    merged: list[RowBatch] = []
    for batch in batches:
        last = merged[-1] if merged else None
        cursor = covering(last.cursor, batch.cursor) if last is not None else None
        if last is None or cursor is None or not _can_join(last, batch, max_rows, max_bytes):
            merged.append(batch)
            continue
        merged[-1] = RowBatch(cursor, last.rows + batch.rows, _rooms(last.rooms, batch.rooms),
                              _joined(last.encoded_rows, batch.encoded_rows))
    return merged


def _can_join(earlier: RowBatch, later: RowBatch, max_rows: int, max_bytes: int) -> bool:
    """Within the limits, encoded alike, and no event in both (one INSERT may not touch
    the same row twice: such batches are written one after the other)."""
    if len(earlier.rows) + len(later.rows) > max_rows:
        return False
    if (earlier.encoded_rows is None) != (later.encoded_rows is None):
        return False
    if earlier.encoded_rows is not None and later.encoded_rows is not None \
            and len(earlier.encoded_rows) + len(later.encoded_rows) > max_bytes:
        return False
    return not {row["event_id"] for row in earlier.rows} & {row["event_id"] for row in later.rows}


def _joined(earlier: bytes | None, later: bytes | None) -> bytes | None:
    """Two encoded JSON arrays of rows as one (compact: "[...]"), copied once."""
    if earlier is None or later is None:
        return None
    if earlier == b"[]":
        return later
    if later == b"[]":
        return earlier
    return b"".join((memoryview(earlier)[:-1], b",", memoryview(later)[1:]))


def _rooms(earlier: list[RoomSummary], later: list[RoomSummary]) -> list[RoomSummary]:
    """One summary per room, the later batch's where both have one."""
    by_room = {room["room_id"]: room for room in earlier}
    by_room.update((room["room_id"], room) for room in later)
    return list(by_room.values())
