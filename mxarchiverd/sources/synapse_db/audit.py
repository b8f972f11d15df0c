"""Synapse's side of `verify`: per room, what a client sees, as Synapse records it.

Within the part of the streams the durable cursors cover (report.CoveredRange),
and optionally only for events sent since a time: the visible event ids, the
redactions Synapse applies (redactions.redacts, with its recheck rule) and each
original's latest valid edit (event_relations; same sender, room and type, not
redacted, newest by origin_server_ts then event id: the rule the archive's
APPLY_EDITS follows). Read-only, one statement each, with the verify timeout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from mxarchiverd.archive.rooms import RoomEntry
from mxarchiverd.media.errors import MediaRefused
from mxarchiverd.media.paths import parse_mxc
from mxarchiverd.media.resolve import find_media
from mxarchiverd.sources.synapse_db.reader import is_soft_failed
from mxarchiverd.sources.synapse_db.report import COVERED_EVENTS, CoveredRange

VISIBLE_SQL = f"""
SELECT e.event_id, e.origin_server_ts, ej.internal_metadata {COVERED_EVENTS}
"""
REDACTIONS_SQL = f"""
WITH v AS (SELECT e.event_id, e.sender, ej.internal_metadata {COVERED_EVENTS})
SELECT rd.redacts, v.event_id, v.sender, rd.recheck, t.sender, t.type, t.room_id, v.internal_metadata
  FROM v JOIN redactions rd ON rd.event_id = v.event_id JOIN events t ON t.event_id = rd.redacts
"""
EDITS_SQL = f"""
WITH v AS (SELECT e.event_id, e.sender, e.type, e.origin_server_ts, ej.internal_metadata {COVERED_EVENTS})
SELECT er.relates_to_id, v.event_id, v.sender, v.type, v.origin_server_ts, v.internal_metadata, ej.json,
       o.sender, o.type, o.room_id
  FROM v JOIN event_relations er ON er.event_id = v.event_id AND er.relation_type = 'm.replace'
  JOIN events o ON o.event_id = er.relates_to_id
  JOIN event_json ej ON ej.event_id = v.event_id
"""


@dataclass(frozen=True)
class Edit:
    event_id: str
    timestamp: int
    new_content: dict[str, Any]


@dataclass(frozen=True)
class SourceRoom:
    """One room as Synapse shows it to clients, within the covered range."""

    # event id -> origin_server_ts of every visible event (sent since the scope's start)
    visible: dict[str, int]
    # redacted event id -> the redaction Synapse applies to it
    redacted: dict[str, str] = field(default_factory=dict)
    # original event id -> its latest valid edit
    latest_edit: dict[str, Edit] = field(default_factory=dict)
    # originals of the room with any m.replace relation at all (valid, redacted or not):
    # their content is checked even when no valid edit is left
    edited: frozenset[str] = frozenset()


def _params(room: RoomEntry, covered: CoveredRange) -> dict[str, Any]:
    return {"room_id": room.room_id, "forward": covered.forward, "backfill": covered.backfill,
            "backfill_all": room.backfill, "added_at": room.added_at_stream, "ex_outlier": covered.ex_outlier,
            "ex_outlier_backfill": covered.ex_outlier_backfill}


def source_room(source: psycopg.Connection, room: RoomEntry, covered: CoveredRange,
                since_ms: int | None) -> SourceRoom:
    params = _params(room, covered)
    visible = {event_id: ts for event_id, ts, metadata in source.execute(VISIBLE_SQL, params).fetchall()
               if not is_soft_failed(metadata) and (since_ms is None or (ts or 0) >= since_ms)}
    redacted = applied_redactions(source.execute(REDACTIONS_SQL, params).fetchall(), room.room_id)
    edit_rows = source.execute(EDITS_SQL, params).fetchall()
    edits = latest_edits(edit_rows, room.room_id, set(redacted))
    return SourceRoom(visible, redacted, edits, frozenset(row[0] for row in edit_rows if row[9] == room.room_id))


def _domain(user_id: str | None) -> str:
    return (user_id or "").partition(":")[2]


def applied_redactions(rows: list[tuple[Any, ...]], room_id: str) -> dict[str, str]:
    """target -> redaction, for the redactions Synapse honours (events_worker
    _maybe_redact_event_row): same room, never the create event, and a redaction
    that needed a recheck only from the original sender's server."""
    found: dict[str, str] = {}
    for target, redaction, sender, recheck, target_sender, target_type, target_room, metadata in rows:
        if is_soft_failed(metadata) or target_room != room_id or target_type == "m.room.create":
            continue
        if recheck and _domain(sender) != _domain(target_sender):
            continue
        found.setdefault(target, redaction)
    return found


def latest_edits(rows: list[tuple[Any, ...]], room_id: str, redacted: set[str]) -> dict[str, Edit]:
    latest: dict[str, Edit] = {}
    for (target, edit_id, sender, type_, ts, metadata, json_text, original_sender, original_type,
         original_room) in rows:
        if (is_soft_failed(metadata) or edit_id in redacted or original_room != room_id
                or sender != original_sender or type_ != original_type or original_type != "m.room.message"):
            continue
        new_content = _new_content(json_text)
        if new_content is None:
            continue
        edit = Edit(edit_id, ts or 0, new_content)
        known = latest.get(target)
        if known is None or (edit.timestamp, edit.event_id) > (known.timestamp, known.event_id):
            latest[target] = edit
    return latest


def _new_content(json_text: str) -> dict[str, Any] | None:
    try:
        event = orjson.loads(json_text)
    except orjson.JSONDecodeError:
        return None
    content = event.get("content") if isinstance(event, dict) else None
    new = content.get("m.new_content") if isinstance(content, dict) else None
    return new if isinstance(new, dict) else None


def synapse_has_file(source: psycopg.Connection, store_path: Any, matrix_url: str) -> str:
    """Whether Synapse still has a referenced file: "on disk", "known" (its database
    knows it, no readable file: fetched over HTTP) or "gone" (it knows nothing of it)."""
    try:
        mxc = parse_mxc(matrix_url)
    except MediaRefused:
        return "gone"
    found = find_media(source, store_path, mxc)
    if found is None:
        return "gone"
    if found.path is not None and found.path.is_file():
        return "on disk"
    return "known"


ROOM_HISTORY_COUNT_SQL = """
SELECT count(*) FROM events e
 WHERE e.room_id = %(room_id)s AND e.stream_ordering > %(cursor)s AND e.stream_ordering <= %(upto)s
"""


def room_history_size(source: psycopg.Connection, room_id: str, cursor: int, upto: int) -> int:
    """Events of a room between two stream orderings (outliers included: a bound for the bar)."""
    row = source.execute(ROOM_HISTORY_COUNT_SQL, {"room_id": room_id, "cursor": cursor, "upto": upto}).fetchone()
    return int(row[0]) if row else 0
