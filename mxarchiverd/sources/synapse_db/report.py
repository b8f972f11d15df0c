"""What the synapse_db source reports to `status` and `verify`.

Both read Synapse's database read-only, with a statement timeout, and compare
it with the durable cursors: every stream of streams.STREAMS that is followed
shows how far behind its bound it is, and verify compares event ids per room
over the part of the source those cursors cover.
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg

from mxarchiverd.archive.reports import ArchiveFacts
from mxarchiverd.archive.rooms import RoomEntry
from mxarchiverd.config import Config
from mxarchiverd.db import connect
from mxarchiverd.sources.base import SourceState, StreamState
from mxarchiverd.sources.synapse_db.bounds import compute_bounds
from mxarchiverd.sources.synapse_db.reader import is_soft_failed
from mxarchiverd.sources.synapse_db.streams import BACKFILL, LIVE, STREAMS

POSITIONS_SQL = ("SELECT stream_name, instance_name, stream_id FROM stream_positions"
                 " WHERE stream_name IN ('events', 'backfill')")
NEWEST_SQL = "SELECT origin_server_ts FROM events WHERE stream_ordering <= %s ORDER BY stream_ordering DESC LIMIT 1"


def open_synapse(config: Config, purpose: str, timeout_factor: float = 1.0) -> psycopg.Connection:
    assert config.source.synapse_db_url is not None
    return connect(config.source.synapse_db_url.value, purpose=purpose, autocommit=True,
                   read_only_timeout=config.source.statement_timeout * timeout_factor)


def source_state(config: Config, facts: ArchiveFacts) -> SourceState:
    with open_synapse(config, "status synapse") as source:
        bounds = compute_bounds(source.execute(POSITIONS_SQL).fetchall(), config.source.event_writers)
        newest = source.execute(NEWEST_SQL, (bounds.forward or 0,)).fetchone()
    streams = []
    for stream in STREAMS:
        if not stream.followed(config.source):
            continue
        cursor, bound = facts.cursors.get(stream.name, 0), stream.bound(bounds)
        behind = stream.direction.behind(cursor, bound) if bound is not None else 0
        streams.append(StreamState(stream.name, stream.direction.value, cursor, bound, behind))
    return SourceState("synapse_db", tuple(streams), newest[0] if newest else None)


# -- verify ---------------------------------------------------------------------------

# The room's events within the covered range (CoveredRange) that a client sees: the
# one definition verify's id list and its state checks (synapse_db/audit.py) share.
COVERED_EVENTS = """
  FROM events e JOIN event_json ej ON ej.event_id = e.event_id
 WHERE e.room_id = %(room_id)s AND NOT e.outlier AND e.rejection_reason IS NULL
   AND NOT EXISTS (SELECT 1 FROM rejections rj WHERE rj.event_id = e.event_id)
   AND e.stream_ordering <= %(forward)s AND e.stream_ordering >= %(backfill)s
   AND (%(backfill_all)s OR e.stream_ordering > %(added_at)s)
   AND NOT EXISTS (SELECT 1 FROM ex_outlier_stream x
                    WHERE x.event_id = e.event_id
                      AND (x.event_stream_ordering > %(ex_outlier)s OR x.event_stream_ordering < %(ex_outlier_backfill)s))
"""
SOURCE_IDS_SQL = f"SELECT e.event_id, ej.internal_metadata {COVERED_EVENTS}"


@dataclass(frozen=True)
class CoveredRange:
    """The part of Synapse's streams the durable cursors cover."""

    forward: int
    backfill: int
    ex_outlier: int
    ex_outlier_backfill: int

    @classmethod
    def of(cls, cursors: dict[str, int]) -> CoveredRange:
        get = {stream.name: cursors.get(stream.name, 0) for stream in STREAMS}
        return cls(get[LIVE.name], get[BACKFILL.name], get["ex_outlier"], get["ex_outlier_backfill"])


def source_event_ids(source: psycopg.Connection, room: RoomEntry, covered: CoveredRange) -> set[str]:
    """Every event of the room a client sees, within what the cursors cover."""
    params = {"room_id": room.room_id, "forward": covered.forward, "backfill": covered.backfill,
              "backfill_all": room.backfill, "added_at": room.added_at_stream, "ex_outlier": covered.ex_outlier,
              "ex_outlier_backfill": covered.ex_outlier_backfill}
    rows = source.execute(SOURCE_IDS_SQL, params).fetchall()
    return {event_id for event_id, metadata in rows if not is_soft_failed(metadata)}
