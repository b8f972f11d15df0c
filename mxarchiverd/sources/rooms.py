"""Which rooms are archived, and from where (the monitored_rooms registry).

The registry lives in the archive database so that an operator can flip
`enabled` in Supabase; the poller re-reads it every round. Config rooms are
written into it at start and on reload.
"""
from __future__ import annotations

from dataclasses import dataclass

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

REGISTER_CONFIG_ROOM = """
INSERT INTO monitored_rooms (room_id, enabled, config_enabled, backfill, discovered_by, bridge_type,
                             added_at_stream, history_upto, history_done)
VALUES (%(room_id)s, %(enabled)s, %(enabled)s, %(backfill)s, 'config', NULL, %(added_at)s, %(cursor)s,
        NOT (%(backfill)s AND %(history_needed)s))
ON CONFLICT (room_id) DO UPDATE SET
  -- A changed config value wins; an unchanged one leaves an operator's flip alone.
  enabled = CASE WHEN monitored_rooms.config_enabled IS DISTINCT FROM EXCLUDED.config_enabled
                 THEN EXCLUDED.enabled ELSE monitored_rooms.enabled END,
  config_enabled = EXCLUDED.config_enabled,
  discovered_by = 'config',
  -- Backfill switched on for a room added without it: read the history it skipped.
  history_upto = CASE WHEN EXCLUDED.backfill AND NOT monitored_rooms.backfill
                      THEN EXCLUDED.history_upto ELSE monitored_rooms.history_upto END,
  history_cursor = CASE WHEN EXCLUDED.backfill AND NOT monitored_rooms.backfill
                        THEN NULL ELSE monitored_rooms.history_cursor END,
  history_done = CASE WHEN EXCLUDED.backfill AND NOT monitored_rooms.backfill
                      THEN NOT %(history_needed)s ELSE monitored_rooms.history_done END,
  backfill = EXCLUDED.backfill,
  updated_at = NOW()
"""

# Rooms found by auto-discovery (bridge portals) or all-rooms mode (Synapse's rooms).
REGISTER_DISCOVERED_ROOM = """
INSERT INTO monitored_rooms (room_id, room_name, whatsapp_id, bridge_type, discovered_by,
                             added_at_stream, history_upto, history_done)
VALUES (%(room_id)s, %(room_name)s, %(whatsapp_id)s, %(bridge_type)s, %(discovered_by)s,
        0, %(cursor)s, NOT %(history_needed)s)
ON CONFLICT (room_id) DO UPDATE SET
  whatsapp_id = COALESCE(EXCLUDED.whatsapp_id, monitored_rooms.whatsapp_id),
  bridge_type = COALESCE(EXCLUDED.bridge_type, monitored_rooms.bridge_type),
  updated_at = NOW()
"""


def load_registry(conn: psycopg.Connection, rooms: tuple[RoomConfig, ...], auto_discover: bool) -> Registry:
    entries = {row[0]: RoomEntry(*row) for row in conn.execute(LOAD_SQL).fetchall()}
    selected = {r.room_id for r in rooms}
    if auto_discover:
        selected |= {r for r, e in entries.items() if e.discovered_by == "bridge"}
    return Registry(entries, all_rooms=not rooms, selected=frozenset(selected))


def register_config_rooms(conn: psycopg.Connection, rooms: tuple[RoomConfig, ...], *,
                          added_at: int, cursor: int, backfill_cursor: int) -> None:
    needed = history_needed(cursor, backfill_cursor)
    for room in rooms:
        conn.execute(REGISTER_CONFIG_ROOM, {
            "room_id": room.room_id, "enabled": room.enabled, "backfill": room.backfill,
            "added_at": added_at, "cursor": cursor, "history_needed": needed,
        })


def register_discovered_rooms(conn: psycopg.Connection, rooms: list[dict[str, str | None]], *,
                              discovered_by: str, cursor: int, backfill_cursor: int) -> None:
    """rooms: dicts with room_id, room_name, whatsapp_id, bridge_type (None where unknown)."""
    needed = history_needed(cursor, backfill_cursor)
    for room in rooms:
        conn.execute(REGISTER_DISCOVERED_ROOM, {**room, "discovered_by": discovered_by,
                                                "cursor": cursor, "history_needed": needed})
