"""Read-only queries on Synapse's PostgreSQL database.

Every read is one statement on a connection opened by db.connect_source:
autocommit, read-only and with a statement timeout by session default, so no
long-lived snapshot holds back Synapse's vacuum, and nothing here can write.
Queries use Synapse's own indexes: events_stream_ordering (UNIQUE on
stream_ordering) for the streams, events_room_stream for per-room history.
Outliers, rejected and soft-failed events are left out, as Synapse leaves them
out of what clients see (synapse-bridge-facts.md §1.2, §1.3, §2.6 step 5).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg

from mxarchiverd.pipeline.messages import RawEvent
from mxarchiverd.sources.synapse_db.bounds import StreamBounds, compute_bounds

# Columns every event query returns, in this order (see row_to_event).
_EVENT_COLUMNS = """
    e.stream_ordering, e.topological_ordering, e.event_id, e.room_id, e.type,
    e.state_key, e.sender, e.origin_server_ts, ej.json, ej.internal_metadata,
    rd.redacts, rd.recheck, rm.room_version
"""
# Synapse's own reading of a redaction's target (it knows the room version) and
# whether it must be rechecked; the room version for everything else.
_JOINS = """
  JOIN event_json ej ON ej.event_id = e.event_id
  LEFT JOIN redactions rd ON rd.event_id = e.event_id
  LEFT JOIN rooms rm ON rm.room_id = e.room_id
"""
_VISIBLE = """
    NOT e.outlier AND e.rejection_reason IS NULL
    AND NOT EXISTS (SELECT 1 FROM rejections rj WHERE rj.event_id = e.event_id)
"""
_ROOM_FILTER = "AND (%(all_rooms)s OR e.room_id = ANY(%(rooms)s))"

FORWARD_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM events e {_JOINS}
 WHERE e.stream_ordering > %(cursor)s AND e.stream_ordering <= %(bound)s AND {_VISIBLE} {_ROOM_FILTER}
 ORDER BY e.stream_ordering LIMIT %(limit)s
"""
BACKFILL_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM events e {_JOINS}
 WHERE e.stream_ordering < %(cursor)s AND e.stream_ordering >= %(bound)s AND {_VISIBLE} {_ROOM_FILTER}
 ORDER BY e.stream_ordering DESC LIMIT %(limit)s
"""
# De-outliered events keep their old stream ordering; ex_outlier_stream gives
# them a new position, which is what this stream's cursor follows.
EX_OUTLIER_SQL = f"""
SELECT x.event_stream_ordering, {_EVENT_COLUMNS}
  FROM ex_outlier_stream x JOIN events e ON e.event_id = x.event_id {_JOINS}
 WHERE x.event_stream_ordering > %(cursor)s AND x.event_stream_ordering <= %(bound)s AND {_VISIBLE}
   {_ROOM_FILTER}
 ORDER BY x.event_stream_ordering LIMIT %(limit)s
"""
EX_OUTLIER_BACKFILL_SQL = f"""
SELECT x.event_stream_ordering, {_EVENT_COLUMNS}
  FROM ex_outlier_stream x JOIN events e ON e.event_id = x.event_id {_JOINS}
 WHERE x.event_stream_ordering < %(cursor)s AND x.event_stream_ordering >= %(bound)s AND {_VISIBLE}
   {_ROOM_FILTER}
 ORDER BY x.event_stream_ordering DESC LIMIT %(limit)s
"""
ROOM_HISTORY_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM events e {_JOINS}
 WHERE e.room_id = %(room_id)s AND e.stream_ordering > %(cursor)s AND e.stream_ordering <= %(upto)s
   AND {_VISIBLE}
 ORDER BY e.stream_ordering LIMIT %(limit)s
"""

# Named events, visible or not (verify --repair re-reads exactly what it found missing
# or wrong; it asks only for ids it found among the visible events).
BY_ID_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM events e {_JOINS}
 WHERE e.event_id = ANY(%(ids)s) AND {_VISIBLE}
 ORDER BY e.stream_ordering
"""


# An event and its position on the stream that found it.
Positioned = tuple[int, RawEvent]


class SynapseReader:
    """One read-only connection to Synapse's database and the queries on it."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    @contextmanager
    def read(self) -> Iterator[psycopg.Cursor[Any]]:
        with self.conn.cursor() as cur:
            yield cur

    def bounds(self, writers: tuple[str, ...]) -> StreamBounds:
        with self.read() as cur:
            cur.execute(
                "SELECT stream_name, instance_name, stream_id FROM stream_positions"
                " WHERE stream_name IN ('events', 'backfill')"
            )
            return compute_bounds(cur.fetchall(), writers)

    # The stream reads: (stream position, event) pairs, the position being what the
    # stream's cursor follows (streams.py declares which read serves which stream).

    def forward(self, cursor: int, bound: int, rooms: Sequence[str] | None, limit: int) -> list[Positioned]:
        return self._by_ordering(FORWARD_SQL, _params(cursor, bound, rooms, limit))

    def backfill(self, cursor: int, bound: int, rooms: Sequence[str] | None, limit: int) -> list[Positioned]:
        return self._by_ordering(BACKFILL_SQL, _params(cursor, bound, rooms, limit))

    def ex_outliers(self, cursor: int, bound: int, rooms: Sequence[str] | None, limit: int) -> list[Positioned]:
        return self._positioned(EX_OUTLIER_SQL, _params(cursor, bound, rooms, limit))

    def ex_outliers_backfill(self, cursor: int, bound: int, rooms: Sequence[str] | None,
                             limit: int) -> list[Positioned]:
        return self._positioned(EX_OUTLIER_BACKFILL_SQL, _params(cursor, bound, rooms, limit))

    def _positioned(self, sql: str, params: dict[str, Any]) -> list[Positioned]:
        with self.read() as cur:
            cur.execute(sql, params)
            return [(row[0], row_to_event(row[1:])) for row in cur.fetchall()]

    def _by_ordering(self, sql: str, params: dict[str, Any]) -> list[Positioned]:
        return [(event["stream_ordering"], event) for event in self._events(sql, params)]

    def room_history(self, room_id: str, cursor: int, upto: int, limit: int) -> list[RawEvent]:
        params = {"room_id": room_id, "cursor": cursor, "upto": upto, "limit": limit}
        return self._events(ROOM_HISTORY_SQL, params)

    def events_by_id(self, event_ids: Sequence[str]) -> list[RawEvent]:
        return self._events(BY_ID_SQL, {"ids": list(event_ids)})

    def all_room_ids(self) -> list[str]:
        with self.read() as cur:
            cur.execute("SELECT room_id FROM rooms")
            return [r[0] for r in cur.fetchall()]

    def _events(self, sql: str, params: dict[str, Any]) -> list[RawEvent]:
        with self.read() as cur:
            cur.execute(sql, params)
            return [row_to_event(row) for row in cur.fetchall()]


def _params(cursor: int, bound: int, rooms: Sequence[str] | None, limit: int) -> dict[str, Any]:
    return {"cursor": cursor, "bound": bound, "limit": limit,
            "all_rooms": rooms is None, "rooms": list(rooms or [])}


def row_to_event(row: Sequence[Any]) -> RawEvent:
    """A JSON-native dict for the queue; the event JSON stays raw text until the enricher."""
    (stream_ordering, topological_ordering, event_id, room_id, type_, state_key, sender,
     origin_server_ts, json_text, internal_metadata, redacts, recheck, room_version) = row
    return {
        "stream_ordering": stream_ordering, "topological_ordering": topological_ordering,
        "event_id": event_id, "room_id": room_id, "type": type_, "state_key": state_key,
        "sender": sender, "origin_server_ts": origin_server_ts, "json": json_text,
        "soft_failed": is_soft_failed(internal_metadata),
        "redacts": redacts, "redaction_recheck": recheck, "room_version": room_version,
    }


def is_soft_failed(internal_metadata: str | None) -> bool:
    """Soft-failed events are stored normally but hidden from clients (§1.2)."""
    if not internal_metadata or "soft_failed" not in internal_metadata:
        return False
    try:
        return bool(orjson.loads(internal_metadata).get("soft_failed"))
    except (orjson.JSONDecodeError, AttributeError):
        return False
