"""Enrichment from the mautrix bridgev2 database (mautrix-whatsapp), read-only.

The bridge keys portals and messages on the WhatsApp side; `portal.mxid` is the
Matrix room and `message.mxid` the Matrix event (synapse-bridge-facts.md §6).
Rows are matched on bridge_id (`''` for a standalone bridge) and, for messages,
on the portal's receiver too.

The bridge creates the Matrix room first and stores portal.mxid only after
createRoom returned (§6.2), so "not a portal" is a passing answer: it is kept for
MISS_TTL seconds at most, and never trusted for a room whose batch carries
messages, which the bridge sends only once the portal row exists.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

PORTALS_SQL = """
SELECT mxid, id, receiver, name, room_type FROM portal WHERE bridge_id = %s AND mxid = ANY(%s)
"""
ALL_PORTALS_SQL = "SELECT mxid, id, receiver, name, room_type FROM portal WHERE bridge_id = %s AND mxid IS NOT NULL"
MESSAGES_SQL = """
SELECT m.mxid, m.id, m.sender_id, g.name, g.identifiers::text
  FROM message m
  LEFT JOIN ghost g ON g.bridge_id = m.bridge_id AND g.id = m.sender_id
 WHERE m.bridge_id = %s AND m.mxid = ANY(%s)
"""
GHOSTS_SQL = "SELECT id, name, identifiers::text FROM ghost WHERE bridge_id = %s AND id = ANY(%s)"

# Ghost MXIDs follow the default username template @whatsapp_<ghost id>:server.
_GHOST_MXID = re.compile(r"^@whatsapp_([^:]+):")
_TEL = re.compile(r'"tel:(\+?\d+)"')
MISS_TTL = 60.0


@dataclass(frozen=True)
class Portal:
    room_id: str
    chat_id: str
    receiver: str
    name: str | None
    room_type: str


@dataclass(frozen=True)
class BridgedMessage:
    message_id: str
    sender_id: str
    sender_name: str | None
    sender_phone: str | None


@dataclass(frozen=True)
class PortalLookup:
    portal: Portal | None
    at: float  # clock reading when the bridge database answered


def needs_lookup(cached: PortalLookup | None, now: float, has_messages: bool) -> bool:
    """Whether to ask the bridge database (again) whether a room is a portal.

    A portal's Matrix room id never changes, so a hit is kept. A miss may only
    mean the bridge has not saved portal.mxid yet; rows are written once, so a
    stale miss would cost a message its WhatsApp ids for good.
    """
    if cached is None:
        return True
    if cached.portal is not None:
        return False
    return has_messages or now - cached.at >= MISS_TTL


class BridgeReader:
    def __init__(self, conn: psycopg.Connection, bridge_id: str, statement_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conn = conn
        self.bridge_id = bridge_id
        self.timeout_ms = max(1, int(statement_timeout * 1000))
        self.clock = clock
        self.portal_cache: dict[str, PortalLookup] = {}

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION READ ONLY")
            self.conn.execute(f"SET LOCAL statement_timeout = {self.timeout_ms}")
            return self.conn.execute(sql, params).fetchall()

    def portals(self, room_ids: set[str], with_messages: Collection[str] = ()) -> dict[str, Portal | None]:
        """The portal of each room, or None; `with_messages`: rooms whose batch has messages."""
        now = self.clock()
        stale = sorted(r for r in room_ids if needs_lookup(self.portal_cache.get(r), now, r in with_messages))
        if stale:
            found = {row[0]: Portal(*row) for row in self._rows(PORTALS_SQL, (self.bridge_id, stale))}
            self.portal_cache.update({r: PortalLookup(found.get(r), now) for r in stale})
        return {r: self.portal_cache[r].portal for r in room_ids}

    def all_portals(self) -> list[Portal]:
        return [Portal(*row) for row in self._rows(ALL_PORTALS_SQL, (self.bridge_id,))]

    def messages(self, event_ids: list[str]) -> dict[str, BridgedMessage]:
        found = {}
        for mxid, message_id, sender_id, name, identifiers in self._rows(MESSAGES_SQL, (self.bridge_id, event_ids)):
            found[mxid] = BridgedMessage(message_id, sender_id, name, phone_of(sender_id, identifiers))
        return found

    def ghosts_by_mxid(self, mxids: set[str]) -> dict[str, BridgedMessage]:
        """Sender info for events the bridge has no message row for (deleted, Matrix-side)."""
        ids = {m: g for m in mxids if (g := ghost_id_of(m))}
        wanted = sorted(set(ids.values()))
        if not wanted:
            return {}
        ghosts = {gid: (name, ident) for gid, name, ident in self._rows(GHOSTS_SQL, (self.bridge_id, wanted))}
        return {m: BridgedMessage("", g, ghosts[g][0], phone_of(g, ghosts[g][1]))
                for m, g in ids.items() if g in ghosts}


def ghost_id_of(mxid: str) -> str | None:
    match = _GHOST_MXID.match(mxid)
    return match.group(1) if match else None


def phone_of(ghost_id: str, identifiers_json: str | None) -> str | None:
    """A tel: identifier when the bridge stored one, else the digits of a phone-number ghost id.

    On stock Synapse `identifiers` is usually empty (§6.3); `lid-` and `bot-` ids carry no phone.
    """
    match = _TEL.search(identifiers_json or "")
    if match:
        number = match.group(1)
        return number if number.startswith("+") else f"+{number}"
    return f"+{ghost_id}" if ghost_id.isdigit() else None
