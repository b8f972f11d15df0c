"""`mxarchiverd verify`: prove that every visible source event of a monitored room is archived.

Compares event ids per room, over the part of the source the durable cursors
cover (events after them are simply not archived yet). Events only in the
archive are reported too: Synapse's retention or purge APIs may have deleted them
from the source, which is the reason to have an archive.
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg

from mxarchiverd.config import Config
from mxarchiverd.db import connect
from mxarchiverd.archive.rooms import RoomEntry, load_registry
from mxarchiverd.sources.synapse_db.reader import is_soft_failed

SOURCE_IDS_SQL = """
SELECT e.event_id, ej.internal_metadata FROM events e JOIN event_json ej ON ej.event_id = e.event_id
 WHERE e.room_id = %(room_id)s AND NOT e.outlier AND e.rejection_reason IS NULL
   AND NOT EXISTS (SELECT 1 FROM rejections rj WHERE rj.event_id = e.event_id)
   AND e.stream_ordering <= %(forward)s AND e.stream_ordering >= %(backfill)s
   AND (%(backfill_all)s OR e.stream_ordering > %(added_at)s)
   AND NOT EXISTS (SELECT 1 FROM ex_outlier_stream x
                    WHERE x.event_id = e.event_id
                      AND (x.event_stream_ordering > %(ex_outlier)s OR x.event_stream_ordering < %(ex_outlier_backfill)s))
"""


@dataclass(frozen=True)
class RoomReport:
    room_id: str
    source: int
    archived: int
    missing: tuple[str, ...]
    only_in_archive: tuple[str, ...]


def verify(config: Config) -> list[RoomReport]:
    assert config.archive_dsn is not None and config.source.synapse_db_url is not None
    with connect(config.archive_dsn, purpose="verify", autocommit=True) as archive, \
         connect(config.source.synapse_db_url.value, purpose="verify synapse", autocommit=True,
                 read_only_timeout=config.source.statement_timeout * 6) as source:
        registry = load_registry(archive, config.rooms, config.source.auto_discover_bridged_rooms)
        cursors: dict[str, int] = dict(archive.execute("SELECT stream, position FROM archive_cursors").fetchall())
        rooms = [r for r in registry.rooms.values() if registry.should_archive(r.room_id, 2**62) and r.history_done]
        return [_room(source, archive, room, cursors) for room in sorted(rooms, key=lambda r: r.room_id)]


def _room(source: psycopg.Connection, archive: psycopg.Connection, room: RoomEntry,
          cursors: dict[str, int]) -> RoomReport:
    params = {"room_id": room.room_id, "forward": cursors.get("events", 0), "backfill": cursors.get("backfill", 0),
              "backfill_all": room.backfill, "added_at": room.added_at_stream, "ex_outlier": cursors.get("ex_outlier", 0),
              "ex_outlier_backfill": cursors.get("ex_outlier_backfill", 0)}
    rows = source.execute(SOURCE_IDS_SQL, params).fetchall()
    expected = {event_id for event_id, metadata in rows if not is_soft_failed(metadata)}
    stored = {r[0] for r in archive.execute("SELECT event_id FROM archived_messages WHERE room_id = %s", (room.room_id,))}
    return RoomReport(room.room_id, len(expected), len(stored),
                      tuple(sorted(expected - stored)), tuple(sorted(stored - expected)))


def render(reports: list[RoomReport]) -> str:
    lines = []
    for r in reports:
        verdict = "ok" if not r.missing else f"MISSING {len(r.missing)}: {', '.join(r.missing[:10])}"
        extra = f"; {len(r.only_in_archive)} only in archive" if r.only_in_archive else ""
        lines.append(f"{r.room_id}: source {r.source}, archived {r.archived}: {verdict}{extra}")
    missing = sum(len(r.missing) for r in reports)
    lines.append(f"{len(reports)} room(s) checked, {missing} event(s) missing from the archive")
    return "\n".join(lines)
