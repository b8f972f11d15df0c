"""Typed messages between stages and their cursors survive the wire form unchanged."""
from __future__ import annotations

import orjson
import pytest

from mxarchiverd.pipeline.cursors import (
    Direction, RoomHistoryCursor, StreamCursor, cursor_from_wire, cursor_to_wire,
)
from mxarchiverd.pipeline.messages import EventBatch, RowBatch, from_wire, to_wire

CURSORS = [StreamCursor("events", 17), StreamCursor("backfill", -40, Direction.DOWN),
           RoomHistoryCursor("!r:x", 5, done=True)]


@pytest.mark.parametrize("cursor", CURSORS)
def test_every_cursor_comes_back_from_its_wire_form(cursor: object) -> None:
    assert cursor_from_wire(orjson.loads(orjson.dumps(cursor_to_wire(cursor)))) == cursor  # type: ignore[arg-type]


@pytest.mark.parametrize("message", [
    EventBatch(CURSORS[0], [{"event_id": "$a", "json": "{}"}]),
    RowBatch(CURSORS[1], [{"event_id": "$a", "media": []}], [{"room_id": "!r:x"}]),
    EventBatch(CURSORS[2]),
])
def test_every_message_comes_back_from_its_wire_form(message: object) -> None:
    assert from_wire(orjson.loads(orjson.dumps(to_wire(message)))) == message  # type: ignore[arg-type]


@pytest.mark.parametrize("wire, problem", [
    ({"kind": "events", "events": []}, "not a cursor"),
    ({"kind": "events", "cursor": {"type": "tape", "position": 1}}, "not a cursor"),
    ({"kind": "events", "cursor": {"type": "stream", "stream": "events"}}, "malformed stream cursor"),
    ({"kind": "events", "cursor": {"type": "stream", "stream": "e", "position": 1}, "events": {}}, "not a list"),
    ({"kind": "gossip", "cursor": {"type": "stream", "stream": "e", "position": 1}}, "unknown stage message"),
])
def test_a_malformed_message_is_refused_with_what_is_wrong(wire: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        from_wire(wire)
