"""Which rooms are archived, and from where (the monitored_rooms registry).

The registry lives in the archive database so that an operator can flip
`enabled` in Supabase; the poller re-reads it every round. Config rooms are
written into it at start and on reload.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson
import psycopg

from mxarchiverd.config import RoomConfig

# The lowest stream ordering: per-room history starts below federation backfill's negatives.
MIN_ORDERING = -(2**63)


@dataclass(frozen=True)
class RoomEntry:
    room_id: str
    enabled: bool
    backfill: bool
    added_at_stream: int
    history_upto: int
    history_cursor: int | None
    history_done: bool
    discovered_by: str


@dataclass(frozen=True)
class Registry:
    rooms: dict[str, RoomEntry]
    # True when the config lists no rooms: every room of the server is archived.
    all_rooms: bool
    # In explicit mode, the rooms that count: the config's, plus the bridge's when auto-discovered.
    selected: frozenset[str]

    def should_archive(self, room_id: str, position: int) -> bool:
        """Whether the event at stream `position` in `room_id` belongs in the archive."""
        room = self.rooms.get(room_id)
        if room is None:
            return self.all_rooms
        if not room.enabled or not (self.all_rooms or room_id in self.selected):
            return False
        return room.backfill or position > room.added_at_stream

    def sql_room_filter(self) -> list[str] | None:
        """Room ids to push into the stream query, or None to read every room."""
        if self.all_rooms:
            return None
        return sorted(r for r in self.selected if r in self.rooms and self.rooms[r].enabled)

    def archived_rooms(self) -> set[str]:
        """Rooms whose new events are archived now."""
        return {r for r in self.rooms if self.should_archive(r, 2**62)}

    def pending_history(self) -> list[RoomEntry]:
        return [r for r in self.rooms.values()
                if not r.history_done and r.enabled and (self.all_rooms or r.room_id in self.selected)]


def history_needed(forward_cursor: int, backfill_cursor: int) -> bool:
    """A room added now needs a per-room history read if the streams already passed anything."""
    return forward_cursor > 0 or backfill_cursor < 0


LOAD_SQL = """
SELECT room_id, COALESCE(enabled, TRUE), backfill, added_at_stream, history_upto, history_cursor,
       history_done, discovered_by
  FROM monitored_rooms
"""

# One statement for all config rooms (a remote archive costs a round trip per statement).
REGISTER_CONFIG_ROOMS = """
INSERT INTO monitored_rooms (room_id, enabled, config_enabled, config_listed, backfill, discovered_by,
                             bridge_type, added_at_stream, history_upto, history_done)
SELECT r.room_id, r.enabled, r.enabled, TRUE, r.backfill, 'config', NULL, %(added_at)s, %(cursor)s,
       NOT (r.backfill AND %(history_needed)s)
  FROM jsonb_to_recordset(%(rooms)s::jsonb) AS r(room_id text, enabled boolean, backfill boolean)
ON CONFLICT (room_id) DO UPDATE SET
  -- A changed config value wins; an unchanged one leaves an operator's flip alone
  -- (a flip back on re-reads history: see the monitored_rooms_reenabled trigger).
  enabled = CASE WHEN monitored_rooms.config_enabled IS DISTINCT FROM EXCLUDED.config_enabled
                 THEN EXCLUDED.enabled ELSE monitored_rooms.enabled END,
  config_enabled = EXCLUDED.config_enabled,
  config_listed = TRUE,
  discovered_by = 'config',
  -- A backfill room that was not archived until now (added without backfill,
  -- dropped from the list, or known only from the stream) reads its history again.
  history_upto = CASE WHEN EXCLUDED.backfill AND (NOT monitored_rooms.backfill OR monitored_rooms.config_listed IS NOT TRUE)
                      THEN GREATEST(monitored_rooms.history_upto, EXCLUDED.history_upto) ELSE monitored_rooms.history_upto END,
  history_cursor = CASE WHEN EXCLUDED.backfill AND (NOT monitored_rooms.backfill OR monitored_rooms.config_listed IS NOT TRUE)
                        THEN NULL ELSE monitored_rooms.history_cursor END,
  history_done = CASE WHEN EXCLUDED.backfill AND (NOT monitored_rooms.backfill OR monitored_rooms.config_listed IS NOT TRUE)
                      THEN NOT %(history_needed)s ELSE monitored_rooms.history_done END,
  backfill = EXCLUDED.backfill,
  updated_at = NOW()
"""

# Rooms no longer in the config are no longer archived (explicit mode); remember it,
# so that listing them again reads the gap.
UNLIST_CONFIG_ROOMS = """
UPDATE monitored_rooms SET config_listed = FALSE, updated_at = NOW()
 WHERE config_listed AND NOT (room_id = ANY(%(room_ids)s))
"""

# Rooms found by auto-discovery (bridge portals) or all-rooms mode (Synapse's rooms).
# Who found a room ranks config > bridge > synapse/stream; a room that becomes a
# bridge room in explicit mode was not archived before, so its history is read.
REGISTER_DISCOVERED_ROOMS = """
INSERT INTO monitored_rooms (room_id, room_name, whatsapp_id, bridge_type, discovered_by,
                             added_at_stream, history_upto, history_done)
SELECT r.room_id, r.room_name, r.whatsapp_id, r.bridge_type, %(discovered_by)s, 0, %(cursor)s, NOT %(history_needed)s
  FROM jsonb_to_recordset(%(rooms)s::jsonb) AS r(room_id text, room_name text, whatsapp_id text, bridge_type text)
ON CONFLICT (room_id) DO UPDATE SET
  whatsapp_id = COALESCE(EXCLUDED.whatsapp_id, monitored_rooms.whatsapp_id),
  bridge_type = COALESCE(EXCLUDED.bridge_type, monitored_rooms.bridge_type),
  discovered_by = CASE WHEN monitored_rooms.discovered_by IN ('config', 'bridge') THEN monitored_rooms.discovered_by
                       ELSE EXCLUDED.discovered_by END,
  history_upto = CASE WHEN %(selects)s AND monitored_rooms.discovered_by NOT IN ('config', 'bridge')
                      THEN GREATEST(monitored_rooms.history_upto, EXCLUDED.history_upto) ELSE monitored_rooms.history_upto END,
  history_cursor = CASE WHEN %(selects)s AND monitored_rooms.discovered_by NOT IN ('config', 'bridge')
                        THEN NULL ELSE monitored_rooms.history_cursor END,
  history_done = CASE WHEN %(selects)s AND monitored_rooms.discovered_by NOT IN ('config', 'bridge')
                      THEN EXCLUDED.history_done ELSE monitored_rooms.history_done END,
  updated_at = NOW()
"""

# A room that became archived while batches that skipped it were in flight: its
# history must reach past them, up to the poller's in-memory cursor.
EXTEND_HISTORY = """
UPDATE monitored_rooms SET history_upto = GREATEST(history_upto, %(cursor)s)
 WHERE room_id = ANY(%(room_ids)s) AND NOT history_done
"""


def load_registry(conn: psycopg.Connection, rooms: tuple[RoomConfig, ...], auto_discover: bool) -> Registry:
    entries = {row[0]: RoomEntry(*row) for row in conn.execute(LOAD_SQL).fetchall()}
    selected = {r.room_id for r in rooms}
    if auto_discover:
        selected |= {r for r, e in entries.items() if e.discovered_by == "bridge"}
    return Registry(entries, all_rooms=not rooms, selected=frozenset(selected))


def register_config_rooms(conn: psycopg.Connection, rooms: tuple[RoomConfig, ...], *,
                          added_at: int, cursor: int, backfill_cursor: int) -> None:
    payload = [{"room_id": r.room_id, "enabled": r.enabled, "backfill": r.backfill} for r in rooms]
    with conn.transaction():
        if rooms:
            conn.execute(UNLIST_CONFIG_ROOMS, {"room_ids": [r.room_id for r in rooms]})
        conn.execute(REGISTER_CONFIG_ROOMS, {"rooms": orjson.dumps(payload).decode(), "added_at": added_at,
                                             "cursor": cursor, "history_needed": history_needed(cursor, backfill_cursor)})


def register_discovered_rooms(conn: psycopg.Connection, rooms: list[dict[str, str | None]], *, discovered_by: str,
                              cursor: int, backfill_cursor: int, selects: bool = False) -> None:
    """rooms: dicts with room_id, room_name, whatsapp_id, bridge_type (None where unknown).

    `selects`: being found this way makes a room archived that was not before
    (bridge discovery in explicit mode).
    """
    if rooms:
        conn.execute(REGISTER_DISCOVERED_ROOMS, {
            "rooms": orjson.dumps(rooms).decode(), "discovered_by": discovered_by, "cursor": cursor,
            "history_needed": history_needed(cursor, backfill_cursor), "selects": selects})


def extend_history(conn: psycopg.Connection, room_ids: list[str], cursor: int) -> None:
    if room_ids:
        conn.execute(EXTEND_HISTORY, {"room_ids": room_ids, "cursor": cursor})
