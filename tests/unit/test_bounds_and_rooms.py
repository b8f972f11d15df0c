"""Commit-safe bounds and room selection (pure)."""
from __future__ import annotations

from mxarchiverd.archive.rooms import Registry, RoomEntry, history_needed
from mxarchiverd.pipeline.cursors import Direction
from mxarchiverd.sources.synapse_db.bounds import compute_bounds

UP, DOWN = Direction.UP, Direction.DOWN


def test_bound_is_the_minimum_over_configured_writers() -> None:
    rows = [("events", "w1", 120), ("events", "w2", 100), ("backfill", "w1", -40), ("backfill", "w2", -55)]
    bounds = compute_bounds(rows, ("w1", "w2"))
    assert bounds.forward == 100 and bounds.backfill == -40


def test_a_writer_without_a_row_holds_the_bound() -> None:
    assert compute_bounds([("events", "w1", 120)], ("w1", "w2")).forward is None
    assert compute_bounds([], ("master",)) == compute_bounds([("other", "master", 5)], ("master",))


def test_forward_bound_never_passes_a_writer_that_has_a_row() -> None:
    # Synapse deletes rows of instances that are no longer writers at startup
    # (MultiWriterIdGenerator._load_current_ids), so every row is a live writer:
    # persister1 has not finished everything up to 100, only up to 50.
    rows = [("events", "master", 100), ("events", "persister1", 50)]
    bound = compute_bounds(rows, ("master",)).forward
    assert bound is not None and bound <= 50


def test_control_forward_bound_is_the_minimum_over_configured_writers() -> None:
    rows = [("events", "master", 100), ("events", "persister1", 50)]
    assert compute_bounds(rows, ("master", "persister1")).forward == 50
    assert compute_bounds(rows[:1], ("master", "persister1")).forward is None


def test_forward_cursor_moves_to_bound_only_when_the_batch_was_not_full() -> None:
    assert UP.advance(10, 50, 30, full_batch=True) == 30
    assert UP.advance(10, 50, 30, full_batch=False) == 50
    assert UP.advance(10, 50, None, full_batch=False) == 50
    assert DOWN.advance(0, -50, -20, full_batch=True) == -20
    assert DOWN.advance(0, -50, None, full_batch=False) == -50


def test_a_cursor_never_moves_back_and_knows_when_it_reached_its_bound() -> None:
    assert UP.advance(60, 50, None, full_batch=False) == 60 and DOWN.advance(-60, -50, None, full_batch=False) == -60
    assert UP.reached(50, 50) and UP.reached(51, 50) and not UP.reached(49, 50)
    assert DOWN.reached(-50, -50) and not DOWN.reached(-49, -50)
    assert UP.behind(40, 50) == 10 and UP.behind(60, 50) == 0 and DOWN.behind(-40, -50) == 10


def entry(room_id: str, *, enabled: bool = True, backfill: bool = True, added_at: int = 0) -> RoomEntry:
    return RoomEntry(room_id, enabled, backfill, added_at, 0, None, True, "config")


def test_registry_rules() -> None:
    rooms = {"!a": entry("!a"), "!b": entry("!b", backfill=False, added_at=100), "!c": entry("!c", enabled=False)}
    explicit = Registry(rooms, all_rooms=False, selected=frozenset({"!a", "!b", "!c"}))
    assert explicit.should_archive("!a", 1) and not explicit.should_archive("!zz", 1)
    assert not explicit.should_archive("!b", 100) and explicit.should_archive("!b", 101)
    assert not explicit.should_archive("!c", 500)
    assert explicit.sql_room_filter() == ["!a", "!b"]
    every = Registry(rooms, all_rooms=True, selected=frozenset())
    assert every.should_archive("!new", 1) and every.sql_room_filter() is None and not every.should_archive("!c", 9)


def test_history_needed_once_a_stream_has_moved() -> None:
    assert not history_needed(0, 0) and history_needed(5, 0) and history_needed(0, -3)


def test_one_read_covers_at_most_a_window_of_positions() -> None:
    assert UP.window(0, 10, 100) == 10 and UP.window(0, 1_000, 100) == 100
    assert DOWN.window(-5, -50, 10) == -15
    assert DOWN.window(-5, -8, 10) == -8

