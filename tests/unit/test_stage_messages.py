"""Typed messages between stages and their cursors survive the wire form unchanged."""
from __future__ import annotations

import orjson
import pytest

from mxarchiverd.pipeline.cursors import (
    Direction, HoleBounds, Membership, PageCursor, Pagination, RoomHistoryCursor, StreamCursor, SyncCursor,
    cursor_from_wire, cursor_to_wire,
)
from mxarchiverd.pipeline.channels import decode, encode
from mxarchiverd.pipeline.messages import EventBatch, RowBatch, from_wire, to_wire

GAP = Pagination("j1", "!r:x", "gap", "t2", to_token="t1")
CURSORS = [StreamCursor("events", 17), StreamCursor("backfill", -40, Direction.DOWN),
           RoomHistoryCursor("!r:x", 5, done=True),
           SyncCursor("@bot:x", "s9", rooms=("!r:x",), jobs=(GAP, Pagination("j2", "!q:x", "hole", "t3",
                      stop_event_ids=("$kick",), hole_after_event_id="$kick")),
                      holes=(HoleBounds("!q:x", "kicked", "@a:x", "User is not in remote chat", "$kick", 5),),
                      memberships=(Membership("!q:x", "leave", "gone", "@a:x", 5),)),
           PageCursor("j2", "!q:x", None, True, 3, "end", hole_state="unfillable",
                      then=Pagination("j3", "!q:x", "hole", None, via_admin_api=True))]


@pytest.mark.parametrize("cursor", CURSORS)
def test_every_cursor_comes_back_from_its_wire_form(cursor: object) -> None:
    assert cursor_from_wire(orjson.loads(orjson.dumps(cursor_to_wire(cursor)))) == cursor  # type: ignore[arg-type]


@pytest.mark.parametrize("message", [
    EventBatch(CURSORS[0], [{"event_id": "$a", "json": "{}"}]),
    RowBatch(CURSORS[1], [{"event_id": "$a", "media": []}], [{"room_id": "!r:x"}]),
    EventBatch(CURSORS[2]),
    RowBatch(CURSORS[0], [{"event_id": "$a"}], [], '[{"event_id": "$a", "body": "line\none ü"}]'.encode()),
])
def test_every_message_comes_back_from_its_wire_form(message: object) -> None:
    assert from_wire(decode(encode(to_wire(message)))) == message  # type: ignore[arg-type]


@pytest.mark.parametrize("wire, problem", [
    ({"kind": "events", "events": []}, "not a cursor"),
    ({"kind": "events", "cursor": {"type": "tape", "position": 1}}, "not a cursor"),
    ({"kind": "events", "cursor": {"type": "stream", "stream": "events"}}, "malformed stream cursor"),
    ({"kind": "events", "cursor": {"type": "stream", "stream": "e", "position": 1}, "events": {}}, "not a list"),
    ({"kind": "gossip", "cursor": {"type": "stream", "stream": "e", "position": 1}}, "unknown stage message"),
    ({"kind": "rows", "cursor": {"type": "stream", "stream": "e", "position": 1}, "attachment": "[]"}, "not bytes"),
])
def test_a_malformed_message_is_refused_with_what_is_wrong(wire: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        from_wire(wire)
