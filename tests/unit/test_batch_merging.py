"""Batches waiting for the dbwriter merged into fewer transactions (pipeline/merging.py)."""
from __future__ import annotations

from typing import Any

import orjson

from mxarchiverd.pipeline.cursors import (
    DecryptionCursor, Direction, PageCursor, RepairCursor, RoomHistoryCursor, StreamCursor, SyncCursor,
)
from mxarchiverd.pipeline.merging import covering, merge_batches
from mxarchiverd.pipeline.messages import RowBatch


def rows(*ids: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"event_id": event_id, **extra} for event_id in ids]


def up(position: int) -> StreamCursor:
    return StreamCursor("events", position)


def test_one_cursor_covers_two_batches_of_the_same_stream_or_room_history() -> None:
    assert covering(up(10), up(20)) == up(20)
    down = StreamCursor("backfill", -20, Direction.DOWN)
    assert covering(StreamCursor("backfill", -10, Direction.DOWN), down) == down
    assert covering(RoomHistoryCursor("!a", 5, False), RoomHistoryCursor("!a", 9, True)) == RoomHistoryCursor("!a", 9, True)


def test_a_cursor_never_moves_back_when_a_later_batch_names_an_earlier_position() -> None:
    assert covering(up(20), up(15)) == up(20)
    assert covering(StreamCursor("b", -20, Direction.DOWN), StreamCursor("b", -10, Direction.DOWN)).position == -20  # type: ignore[union-attr]


def test_different_streams_rooms_and_cursors_that_carry_more_than_a_position_are_not_merged() -> None:
    assert covering(up(1), StreamCursor("backfill", -1, Direction.DOWN)) is None
    assert covering(RoomHistoryCursor("!a", 1, False), RoomHistoryCursor("!b", 2, False)) is None
    assert covering(up(1), RoomHistoryCursor("!a", 2, False)) is None
    sync = SyncCursor("@bot:x", "s1")
    page = PageCursor("job", "!a", "t", False)
    for cursor in (sync, page, DecryptionCursor(), RepairCursor()):
        assert covering(cursor, cursor) is None


def test_consecutive_batches_merge_up_to_the_row_limit_and_keep_their_order() -> None:
    batches = [RowBatch(up(1), rows("$1", "$2")), RowBatch(up(2), rows("$3")), RowBatch(up(3), rows("$4", "$5")),
               RowBatch(up(4), rows("$6"))]
    merged = merge_batches(batches, max_rows=3)
    assert [(b.cursor, [r["event_id"] for r in b.rows]) for b in merged] == [
        (up(2), ["$1", "$2", "$3"]), (up(4), ["$4", "$5", "$6"])]


def test_a_batch_that_cannot_share_a_cursor_splits_the_run() -> None:
    sync = SyncCursor("@bot:x", "s1")
    batches = [RowBatch(up(1), rows("$1")), RowBatch(sync, rows("$2")), RowBatch(up(3), rows("$3")),
               RowBatch(up(4), rows("$4"))]
    merged = merge_batches(batches, max_rows=100)
    assert [b.cursor for b in merged] == [up(1), sync, up(4)]


def test_batches_that_share_an_event_are_written_one_after_the_other() -> None:
    merged = merge_batches([RowBatch(up(1), rows("$1", "$2")), RowBatch(up(2), rows("$2", "$3"))], 10)
    assert [b.cursor for b in merged] == [up(1), up(2)]


def test_encoded_rows_are_joined_into_one_array() -> None:
    first = RowBatch(up(1), rows("$1"), [], orjson.dumps([{"event_id": "$1", "text": "naïve"}]))
    empty = RowBatch(up(2), [], [], b"[]")
    third = RowBatch(up(3), rows("$3", "$4"), [], orjson.dumps([{"event_id": "$3"}, {"event_id": "$4"}]))
    (merged,) = merge_batches([first, empty, third], 10)
    assert merged.encoded_rows is not None
    assert [r["event_id"] for r in orjson.loads(merged.encoded_rows)] == ["$1", "$3", "$4"]
    assert orjson.loads(merged.encoded_rows)[0]["text"] == "naïve"
    assert merge_batches([first, RowBatch(up(2), rows("$2"))], 10)[0].cursor == up(1), "encoded and not: apart"


def test_rooms_are_kept_once_each_with_the_later_summary() -> None:
    first = RowBatch(up(1), rows("$1"), [{"room_id": "!a", "room_name": "old"}, {"room_id": "!b", "room_name": "b"}])
    second = RowBatch(up(2), rows("$2"), [{"room_id": "!a", "room_name": "new"}])
    (merged,) = merge_batches([first, second], 10)
    assert sorted((r["room_id"], r["room_name"]) for r in merged.rooms) == [("!a", "new"), ("!b", "b")]


def test_empty_batches_only_move_the_cursor() -> None:
    assert merge_batches([RowBatch(up(1)), RowBatch(up(7))], 10) == [RowBatch(up(7))]


def test_encoded_rows_merge_only_up_to_the_byte_limit() -> None:
    big = [RowBatch(up(i), rows(f"${i}"), [], b"[" + b"x" * 98 + b"]") for i in range(1, 5)]
    merged = merge_batches(big, max_rows=100, max_bytes=250)
    assert [b.cursor for b in merged] == [up(2), up(4)]
