"""The messages between pipeline stages: typed batches, each with its cursor.

    source (poller) --EventBatch--> enricher --RowBatch--> dbwriter

A batch is the unit of at-least-once delivery: the dbwriter stores its rows and
its cursor in one transaction, so a batch lost with a crashed stage is read
again from the durable cursor, and a batch delivered twice has the effect of
one. Events and rows stay JSON-native dicts (thousands per second cross the
queues; a dataclass per event would cost more than it says), with their keys
documented here once.

This package is neutral ground: the supervisor and the workers both import it,
and it imports neither.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mxarchiverd.pipeline.channels import ATTACHMENT
from mxarchiverd.pipeline.cursors import Cursor, cursor_from_wire, cursor_to_wire

# One event as a source reads it (sources/synapse_db/reader.py, sources/matrix_sync/):
#   event_id, room_id, type, state_key, sender, origin_server_ts   as in the event
#   json                 the event's exact JSON text (parsed by the enricher: a hostile
#                        event must fail there, in classify, not in the source)
#   stream_ordering, topological_ordering   the homeserver's orderings (None in bot mode)
#   soft_failed          hidden from clients by Synapse (such events are never archived)
#   redacts, redaction_recheck   Synapse's own reading of a redaction's target
#   room_version         decides where a redaction's target is read from
RawEvent = dict[str, Any]
RAW_EVENT_KEYS: tuple[str, ...] = (
    "event_id", "room_id", "type", "state_key", "sender", "origin_server_ts", "json",
    "stream_ordering", "topological_ordering", "soft_failed", "redacts", "redaction_recheck", "room_version",
)

# One archived_messages row (archive/batch_sql.py ROW_COLUMNS), plus "media": the
# attachments to queue (classify.MediaRef fields). Built by classify.build_row.
ArchiveRow = dict[str, Any]

# What the dbwriter keeps about a room in monitored_rooms (enrich.room_summary):
# room_id, room_name, room_alias, encryption, whatsapp_id, bridge_type.
RoomSummary = dict[str, Any]


@dataclass(frozen=True)
class EventBatch:
    """Raw events read by a source, and the cursor position reading them took it to.

    `events` may be empty: a read that found nothing still moves the cursor over
    the gap it proved empty. `context` are events that are not this batch's to
    archive but say who was who (bot mode: the room state a /sync or /messages
    answer sends along); the enricher reads them for names.
    """

    cursor: Cursor
    events: list[RawEvent] = field(default_factory=list)
    context: list[RawEvent] = field(default_factory=list)


@dataclass(frozen=True)
class RowBatch:
    """Archive rows for the dbwriter, the rooms they are in, and the cursor to store with them.

    `encoded_rows`, when set, is the rows' INSERT payload as UTF-8 JSON, encoded once
    by the enricher (archive/batches.py encoded): it travels as the message's
    attachment (pipeline/channels.py) and the dbwriter sends it as it is,
    and `rows` then holds only what its other statements read. Without it the
    dbwriter encodes `rows` itself (one-shot commands build such batches).
    """

    cursor: Cursor
    rows: list[ArchiveRow] = field(default_factory=list)
    rooms: list[RoomSummary] = field(default_factory=list)
    encoded_rows: bytes | None = None


StageMessage = EventBatch | RowBatch

EVENTS = "events"
ROWS = "rows"


def to_wire(message: StageMessage) -> dict[str, Any]:
    """The JSON-native form that pipeline/channels.py puts in an envelope (with, for
    rows encoded already, their bytes as its attachment)."""
    if isinstance(message, EventBatch):
        return {"kind": EVENTS, "cursor": cursor_to_wire(message.cursor), "events": message.events,
                "context": message.context}
    wire: dict[str, Any] = {"kind": ROWS, "cursor": cursor_to_wire(message.cursor), "rows": message.rows,
                            "rooms": message.rooms}
    if message.encoded_rows is not None:
        wire[ATTACHMENT] = message.encoded_rows
    return wire


def from_wire(data: dict[str, Any]) -> StageMessage:
    """A decoded envelope back to its typed message; ValueError names what is wrong."""
    kind = data.get("kind")
    cursor = cursor_from_wire(data.get("cursor"))
    if kind == EVENTS:
        return EventBatch(cursor, _list(data, "events"), _list(data, "context"))
    if kind == ROWS:
        encoded = data.get(ATTACHMENT)
        if encoded is not None and not isinstance(encoded, bytes):
            raise ValueError(f"rows message: its attachment is {type(encoded).__name__}, not bytes")
        return RowBatch(cursor, _list(data, "rows"), _list(data, "rooms"), encoded)
    raise ValueError(f"unknown stage message kind: {kind!r}")


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{data.get('kind')} message: {key} is {type(value).__name__}, not a list")
    return value
