"""Room names from Synapse's current state; sender names as they were when sent (batched, cached).

current_state_events joined to event_json is authoritative; room_stats_state is
filled asynchronously and can lag (synapse-bridge-facts.md §1.7), so it is not used.

A message is attributed to the room display name of the m.room.member event in
force when it was sent (§1.9), not today's: history read late (first start,
after an outage, per-room backfill) must not get names chosen afterwards. Each
(room, user)'s membership history is loaded once, by stream ordering, and each
event finds its name by bisection.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from mxarchiverd.sources.synapse_db.reader import SynapseReader

ROOM_STATE_TYPES = ("m.room.name", "m.room.canonical_alias", "m.room.encryption")

ROOM_STATE_SQL = """
SELECT c.room_id, c.type, ej.json FROM current_state_events c
  JOIN event_json ej ON ej.event_id = c.event_id
 WHERE c.room_id = ANY(%s) AND c.state_key = '' AND c.type = ANY(%s)
"""
# Every membership of the wanted (room, user) pairs, exact pairs through unnest
# (the room_memberships user/room indexes); event_stream_ordering is NULL on rows
# older than Synapse's delta 74/03 until its background update fills it.
MEMBER_HISTORY_SQL = """
SELECT rm.room_id, rm.user_id, COALESCE(rm.event_stream_ordering, e.stream_ordering), rm.display_name
  FROM unnest(%s::text[], %s::text[]) AS p(room_id, user_id)
  JOIN room_memberships rm ON rm.room_id = p.room_id AND rm.user_id = p.user_id
  LEFT JOIN events e ON e.event_id = rm.event_id
"""
# Bounds memory on servers with very many (room, user) pairs; reloading is cheap.
MAX_HISTORIES = 100_000


@dataclass
class RoomInfo:
    name: str | None = None
    alias: str | None = None
    encryption: str | None = None


@dataclass
class MemberHistory:
    """One user's memberships in one room, sorted by stream ordering."""

    orderings: list[int] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)


def history_of(memberships: Iterable[tuple[int, str | None]]) -> MemberHistory:
    ordered = sorted(memberships, key=lambda m: m[0])
    return MemberHistory([o for o, _ in ordered], [n for _, n in ordered])


def name_at(history: MemberHistory | None, ordering: int | None) -> str | None:
    """The display name in force just before the event at `ordering` (Matrix's state
    before an event): a rename or a leave is shown under the name it was sent with.

    An event before every known membership gets the earliest name: federation
    backfill gives negative orderings that do not follow the room's history, and
    the first join is the best guess. Without an ordering, the latest name.
    """
    if history is None or not history.orderings:
        return None
    if ordering is None:
        return history.names[-1]
    index = bisect_left(history.orderings, ordering)
    return history.names[index - 1] if index else history.names[0]


class RoomStateCache:
    """Caches per room and per (room, user); a batch's own state events invalidate entries."""

    def __init__(self, reader: SynapseReader) -> None:
        self.reader = reader
        self.rooms: dict[str, RoomInfo] = {}
        self.histories: dict[tuple[str, str], MemberHistory] = {}

    @staticmethod
    def ordering(row: dict[str, Any]) -> int | None:
        """What a row's sender name is looked up by: Synapse's stream ordering."""
        return row.get("stream_ordering")

    def close(self) -> None:
        self.reader.conn.close()

    def invalidate(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            if event["type"] in ROOM_STATE_TYPES:
                self.rooms.pop(event["room_id"], None)
            elif event["type"] == "m.room.member" and event["state_key"]:
                self.histories.pop((event["room_id"], event["state_key"]), None)

    def room_info(self, room_ids: set[str]) -> dict[str, RoomInfo]:
        missing = [r for r in room_ids if r not in self.rooms]
        if missing:
            self.rooms.update(self._load_rooms(missing))
        return {r: self.rooms[r] for r in room_ids}

    def display_names(self, senders: Sequence[tuple[str, str, int | None]]) -> list[str | None]:
        """The room display name of each (room, user) as of the event at that stream ordering."""
        missing = sorted({(room, user) for room, user, _ in senders} - self.histories.keys())
        if missing:
            if len(self.histories) + len(missing) > MAX_HISTORIES:
                self.histories.clear()
            self.histories.update(self._load_histories(missing))
        return [name_at(self.histories.get((room, user)), ordering) for room, user, ordering in senders]

    def _load_rooms(self, room_ids: list[str]) -> dict[str, RoomInfo]:
        found = {r: RoomInfo() for r in room_ids}
        with self.reader.read() as cur:
            cur.execute(ROOM_STATE_SQL, (room_ids, list(ROOM_STATE_TYPES)))
            for room_id, type_, json_text in cur.fetchall():
                apply_room_state(found[room_id], type_, json_text)
        return found

    def _load_histories(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], MemberHistory]:
        found: dict[tuple[str, str], list[tuple[int, str | None]]] = {p: [] for p in pairs}
        with self.reader.read() as cur:
            cur.execute(MEMBER_HISTORY_SQL, ([r for r, _ in pairs], [u for _, u in pairs]))
            for room_id, user_id, ordering, name in cur.fetchall():
                if ordering is not None:
                    found[(room_id, user_id)].append((ordering, name))
        return {p: history_of(memberships) for p, memberships in found.items()}


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
