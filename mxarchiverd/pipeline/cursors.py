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

import dataclasses
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


# -- bot mode (sources/matrix_sync/) ---------------------------------------------

@dataclass(frozen=True)
class Pagination:
    """A /messages job a sync opened (room_pagination): page back from `from_token`.

    kind: gap (a limited timeline's left-out events, down to `to_token`, the
    previous since), history (down to m.room.create), hole (down to the event
    that opened the hole, `stop_event_ids`).
    """

    id: str
    room_id: str
    kind: str
    from_token: str | None
    to_token: str | None = None
    stop_event_ids: tuple[str, ...] = ()
    via_admin_api: bool = False
    # For a hole job: the hole it fills, by its opening event.
    hole_after_event_id: str | None = None


@dataclass(frozen=True)
class HoleBounds:
    """A stretch the bot could not see (room_holes), as a sync found it opened or closed."""

    room_id: str
    kind: str                       # kicked, banned, left
    by_user: str | None
    reason: str | None
    after_event_id: str | None      # the kick, ban or leave: the last event seen
    after_ts: int | None
    before_event_id: str | None = None  # the bot's join when back; None while out
    before_ts: int | None = None
    # "unfillable" when nothing the bot may use can page it; else derived from the bounds.
    state: str | None = None


@dataclass(frozen=True)
class Membership:
    """The bot's own membership in a room, as of a sync (monitored_rooms.bot_membership)."""

    room_id: str
    membership: str                 # join, invite, leave, ban
    reason: str | None = None
    by_user: str | None = None
    at_ts: int | None = None


@dataclass(frozen=True)
class Withheld:
    """A sender's refusal to share a Megolm key (m.room_key.withheld), with its code."""

    room_id: str
    session_id: str
    sender: str
    code: str
    reason: str | None = None


@dataclass(frozen=True)
class SyncCursor:
    """The position after one /sync, and what it learned about coverage.

    `token` is next_batch: where the next /sync starts (sync_state). Stored with
    the sync's rows are also the rooms it delivered events for (their
    monitored_rooms.last_sync_token), the pagination jobs it opened, the holes it
    opened or closed and the bot's memberships: a crash before COMMIT loses all
    of it together with the rows, and the same /sync is made again.
    """

    account: str
    token: str
    rooms: tuple[str, ...] = ()
    jobs: tuple[Pagination, ...] = ()
    holes: tuple[HoleBounds, ...] = ()
    memberships: tuple[Membership, ...] = ()
    withheld: tuple[Withheld, ...] = ()


@dataclass(frozen=True)
class PageCursor:
    """How far one pagination job has come after a page; `done` once it stopped."""

    job_id: str
    room_id: str
    resume_token: str | None
    done: bool
    events_seen: int = 0            # events this page delivered
    outcome: str | None = None      # end, stop_event, stalled (once done)
    create_seen: bool = False
    restricted_by: str | None = None
    lowest_event_id: str | None = None
    lowest_ts: int | None = None
    # Once done: history -> is the room complete to creation; hole -> its new state.
    history_complete: bool | None = None
    hole_state: str | None = None   # filled, unfillable
    # A job to continue with (a hole the bot could not page, handed to the admin API).
    then: Pagination | None = None


@dataclass(frozen=True)
class DecryptionCursor:
    """A batch of archived ciphertext decrypted now that its keys arrived.

    It moves no position: the source's place is unchanged, and the rows, decrypted
    in place, take themselves off the pending list (archive/batches.py).
    """

    sessions: tuple[str, ...] = ()   # the Megolm session ids the keys were for


Cursor = StreamCursor | RoomHistoryCursor | SyncCursor | PageCursor | DecryptionCursor

# The wire name of each cursor type, for the queue envelopes.
_WIRE_TYPES: dict[str, type[Any]] = {
    "stream": StreamCursor, "room_history": RoomHistoryCursor, "sync": SyncCursor, "page": PageCursor,
    "decryption": DecryptionCursor,
}
_WIRE_NAMES: dict[type[Any], str] = {kind: name for name, kind in _WIRE_TYPES.items()}
# Fields that hold records, and the record type of each (a tuple of them, or one or None).
_NESTED: dict[tuple[str, str], type[Any]] = {
    ("sync", "jobs"): Pagination, ("sync", "holes"): HoleBounds, ("sync", "memberships"): Membership,
    ("sync", "withheld"): Withheld,
    ("page", "then"): Pagination,
}


def cursor_to_wire(cursor: Cursor) -> dict[str, Any]:
    """A JSON-native dict with a "type" key."""
    fields: dict[str, Any] = dataclasses.asdict(cursor)
    if isinstance(cursor, StreamCursor):
        fields["direction"] = cursor.direction.value
    return {"type": _WIRE_NAMES[type(cursor)], **fields}


def cursor_from_wire(data: Any) -> Cursor:
    """The cursor back from its wire form; ValueError for anything else."""
    if not isinstance(data, dict) or data.get("type") not in _WIRE_TYPES:
        raise ValueError(f"not a cursor: {data!r:.200}")
    kind = data["type"]
    fields = _tuples({key: value for key, value in data.items() if key != "type"})
    try:
        if kind == "stream":
            fields["direction"] = Direction(fields.get("direction", Direction.UP.value))
        for (owner, name), record in _NESTED.items():
            if owner == kind and name in fields:
                fields[name] = _records(record, fields[name])
        cursor: Cursor = _WIRE_TYPES[kind](**fields)
        return cursor
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed {kind} cursor: {exc}") from None


def _records(record: type[Any], value: Any) -> Any:
    """A list of records' dicts back to a tuple of records; one dict to one record."""
    if value is None:
        return None
    if isinstance(value, dict):
        return record(**_tuples(value))
    return tuple(record(**_tuples(item)) for item in value)


def _tuples(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON has lists where the records have tuples."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()}
