"""Room names and sender display names from Synapse's current state (batched, cached).

current_state_events joined to event_json is authoritative; room_stats_state is
filled asynchronously and can lag (synapse-bridge-facts.md §1.7), so it is not used.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from mxarchiverd.sources.synapse_db import SynapseReader

ROOM_STATE_TYPES = ("m.room.name", "m.room.canonical_alias", "m.room.encryption")

ROOM_STATE_SQL = """
SELECT c.room_id, c.type, ej.json FROM current_state_events c
  JOIN event_json ej ON ej.event_id = c.event_id
 WHERE c.room_id = ANY(%s) AND c.state_key = '' AND c.type = ANY(%s)
"""
DISPLAY_NAME_SQL = """
SELECT c.room_id, c.state_key, m.display_name FROM current_state_events c
  JOIN room_memberships m ON m.event_id = c.event_id
 WHERE c.type = 'm.room.member' AND c.room_id = ANY(%s) AND c.state_key = ANY(%s)
"""


@dataclass
class RoomInfo:
    name: str | None = None
    alias: str | None = None
    encryption: str | None = None


class RoomStateCache:
    """Caches per room and per (room, user); a batch's own state events invalidate entries."""

    def __init__(self, reader: SynapseReader) -> None:
        self.reader = reader
        self.rooms: dict[str, RoomInfo] = {}
        self.names: dict[tuple[str, str], str | None] = {}

    def invalidate(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            if event["type"] in ROOM_STATE_TYPES:
                self.rooms.pop(event["room_id"], None)
            elif event["type"] == "m.room.member" and event["state_key"]:
                self.names.pop((event["room_id"], event["state_key"]), None)

    def room_info(self, room_ids: set[str]) -> dict[str, RoomInfo]:
        missing = [r for r in room_ids if r not in self.rooms]
        if missing:
            self.rooms.update(self._load_rooms(missing))
        return {r: self.rooms[r] for r in room_ids}

    def display_names(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        missing = [p for p in pairs if p not in self.names]
        if missing:
            self.names.update(self._load_names(missing))
        return {p: self.names.get(p) for p in pairs}

    def _load_rooms(self, room_ids: list[str]) -> dict[str, RoomInfo]:
        found = {r: RoomInfo() for r in room_ids}
        with self.reader.read() as cur:
            cur.execute(ROOM_STATE_SQL, (room_ids, list(ROOM_STATE_TYPES)))
            for room_id, type_, json_text in cur.fetchall():
                apply_room_state(found[room_id], type_, json_text)
        return found

    def _load_names(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        found: dict[tuple[str, str], str | None] = {p: None for p in pairs}
        rooms = sorted({r for r, _ in pairs})
        users = sorted({u for _, u in pairs})
        with self.reader.read() as cur:
            cur.execute(DISPLAY_NAME_SQL, (rooms, users))
            for room_id, user_id, name in cur.fetchall():
                if (room_id, user_id) in found:
                    found[(room_id, user_id)] = name
        return found


def apply_room_state(info: RoomInfo, type_: str, json_text: str) -> None:
    """Fill one RoomInfo field from a state event's JSON; odd values are ignored."""
    try:
        content = orjson.loads(json_text).get("content")
    except (orjson.JSONDecodeError, AttributeError):
        return
    if not isinstance(content, dict):
        return
    value = {"m.room.name": "name", "m.room.canonical_alias": "alias", "m.room.encryption": "algorithm"}[type_]
    text = content.get(value)
    if isinstance(text, str):
        setattr(info, {"algorithm": "encryption"}.get(value, value), text.replace("\x00", "\ufffd"))
