"""Where a source has got to: the typed cursors that ride with every batch.

A batch names the cursor position it takes its source to, and the dbwriter
stores that cursor in the transaction that stores the batch's rows (DESIGN.md
invariant 2). Each kind of cursor is one frozen dataclass here; how each is
stored is the archive gateway's business (archive/cursors.py), and which
sources produce which kind is the sources' (sources/).

A stream's direction is part of its cursor, so that the one place that moves a
durable cursor can refuse to move it backwards without knowing stream names.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Direction(enum.Enum):
    """Which way a stream's positions run; its cursor only ever moves that way."""

    UP = "up"      # the live stream: positions grow
    DOWN = "down"  # federation backfill: positions count down from 0

    def further(self, a: int, b: int) -> int:
        """The position further along this direction: a cursor never moves back."""
        return max(a, b) if self is Direction.UP else min(a, b)

    def reached(self, cursor: int, bound: int) -> bool:
        """True when nothing lies between the cursor and the bound."""
        return self.further(cursor, bound) == cursor

    def behind(self, cursor: int, bound: int) -> int:
        """How many positions the cursor is behind the bound (never negative)."""
        return max(0, bound - cursor if self is Direction.UP else cursor - bound)

    def window(self, cursor: int, bound: int, size: int) -> int:
        """The bound of one read: the stream's bound, but at most `size` positions on."""
        return min(bound, cursor + size) if self is Direction.UP else max(bound, cursor - size)

    def advance(self, cursor: int, bound: int, last_read: int | None, full_batch: bool) -> int:
        """Where the cursor goes after reading from it towards `bound` with a LIMIT.

        A full batch may have stopped short of the bound, so the cursor moves only
        to the last row read; otherwise every committed row up to the bound has been
        seen and the rest of the way is a permanent gap (rollbacks, ids used by other
        streams), so the cursor moves to the bound.
        """
        if full_batch and last_read is not None:
            return last_read
        return self.further(cursor, bound)


@dataclass(frozen=True)
class StreamCursor:
    """A position on one of a source's streams (archive_cursors)."""

    stream: str
    position: int
    direction: Direction = Direction.UP


@dataclass(frozen=True)
class RoomHistoryCursor:
    """How far one room's own history read has come (monitored_rooms.history_cursor).

    Rooms added after the streams had passed them have their earlier events read
    room by room, upward from the start of the room; `done` once the read
    reached where the streams took over.
    """

    room_id: str
    position: int
    done: bool


Cursor = StreamCursor | RoomHistoryCursor

# The wire name of each cursor type, for the queue envelopes.
_WIRE_TYPES: dict[str, type[Cursor]] = {"stream": StreamCursor, "room_history": RoomHistoryCursor}
_WIRE_NAMES: dict[type[Cursor], str] = {kind: name for name, kind in _WIRE_TYPES.items()}


def cursor_to_wire(cursor: Cursor) -> dict[str, Any]:
    """A JSON-native dict with a "type" key."""
    fields: dict[str, Any] = dict(cursor.__dict__)
    if isinstance(cursor, StreamCursor):
        fields["direction"] = cursor.direction.value
    return {"type": _WIRE_NAMES[type(cursor)], **fields}


def cursor_from_wire(data: Any) -> Cursor:
    """The cursor back from its wire form; ValueError for anything else."""
    if not isinstance(data, dict) or data.get("type") not in _WIRE_TYPES:
        raise ValueError(f"not a cursor: {data!r:.200}")
    fields = {key: value for key, value in data.items() if key != "type"}
    if data["type"] == "stream":
        fields["direction"] = Direction(fields.get("direction", Direction.UP.value))
    try:
        return _WIRE_TYPES[data["type"]](**fields)
    except TypeError as exc:
        raise ValueError(f"malformed {data['type']} cursor: {exc}") from None
