"""Names in bot mode: from the state events the archive holds and the batch brings.

The same interface as sources/room_state.py RoomStateCache (which reads
Synapse's database), ordered by origin_server_ts instead of stream ordering:
the client API exposes no stream positions. A batch's own state events count
before they are archived, so a message and the member event that named its
sender may arrive together (a first sync, a /messages page).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import psycopg

from mxarchiverd.archive.room_state import ROOM_STATE_TYPES, member_names, room_state_events
from mxarchiverd.sources.room_state import MAX_HISTORIES, MemberHistory, RoomInfo, history_of, name_at

_FIELDS = {"m.room.name": ("name", "name"), "m.room.canonical_alias": ("alias", "alias"),
           "m.room.encryption": ("algorithm", "encryption")}


class ArchivedRoomState:
    """Caches per room and per (room, user), like RoomStateCache; `ordering` is a timestamp."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.rooms: dict[str, RoomInfo] = {}
        self.room_ts: dict[tuple[str, str], int] = {}
        self.histories: dict[tuple[str, str], MemberHistory] = {}
        # Members named by batches not archived yet: (room, user) -> [(ts, name)].
        self.pending: dict[tuple[str, str], list[tuple[int, str | None]]] = {}

    @staticmethod
    def ordering(row: dict[str, Any]) -> int | None:
        return row.get("timestamp")

    def invalidate(self, events: Iterable[dict[str, Any]]) -> None:
        """Take the batch's own state events into account (they may be archived only after it)."""
        for event in events:
            content = _content(event.get("json"))
            if event["type"] in ROOM_STATE_TYPES and event.get("state_key") == "":
                self._note_room_state(event["room_id"], event["type"], event.get("origin_server_ts") or 0, content)
            elif event["type"] == "m.room.member" and event.get("state_key"):
                pair = (event["room_id"], event["state_key"])
                name = content.get("displayname") if isinstance(content.get("displayname"), str) else None
                self.pending.setdefault(pair, []).append((event.get("origin_server_ts") or 0, name))
                self.histories.pop(pair, None)

    def room_info(self, room_ids: set[str]) -> dict[str, RoomInfo]:
        missing = [r for r in room_ids if r not in self.rooms]
        if missing:
            for room_id in missing:
                self.rooms.setdefault(room_id, RoomInfo())
            for room_id, type_, ts, content in room_state_events(self.conn, missing):
                self._note_room_state(room_id, type_, ts, content if isinstance(content, dict) else {})
        return {r: self.rooms.setdefault(r, RoomInfo()) for r in room_ids}

    def display_names(self, senders: Sequence[tuple[str, str, int | None]]) -> list[str | None]:
        missing = sorted({(room, user) for room, user, _ in senders} - self.histories.keys())
        if missing:
            if len(self.histories) + len(missing) > MAX_HISTORIES:
                self.histories.clear()
            found: dict[tuple[str, str], list[tuple[int, str | None]]] = {p: list(self.pending.get(p, ())) for p in missing}
            for room_id, user_id, ts, name in member_names(self.conn, missing):
                found[(room_id, user_id)].append((ts, name))
            self.histories.update({pair: history_of(names) for pair, names in found.items()})
        return [name_at(self.histories.get((room, user)), ordering) for room, user, ordering in senders]

    def _note_room_state(self, room_id: str, type_: str, ts: int, content: dict[str, Any]) -> None:
        """The newer of what is known and this event wins."""
        if ts < self.room_ts.get((room_id, type_), -1):
            return
        self.room_ts[(room_id, type_)] = ts
        key, attribute = _FIELDS[type_]
        value = content.get(key)
        setattr(self.rooms.setdefault(room_id, RoomInfo()), attribute,
                value.replace("\x00", "\ufffd") if isinstance(value, str) else None)

    def close(self) -> None:
        self.conn.close()


def _content(json_text: Any) -> dict[str, Any]:
    try:
        event = orjson.loads(json_text) if isinstance(json_text, str) else {}
    except orjson.JSONDecodeError:
        return {}
    content = event.get("content") if isinstance(event, dict) else None
    return content if isinstance(content, dict) else {}
