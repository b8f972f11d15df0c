"""Room state as the archive holds it: bot mode's source of names.

Bot mode has no Synapse database to ask, but every state event the bot saw is
an archived row (event_type, state_key, content), so room names and the
display names senders had when they sent come from the archive itself.
"""
from __future__ import annotations

import psycopg

ROOM_STATE_TYPES = ("m.room.name", "m.room.canonical_alias", "m.room.encryption")

# The newest of each wanted state type per room.
ROOM_STATE_SQL = """
SELECT DISTINCT ON (room_id, event_type) room_id, event_type, timestamp, content
  FROM archived_messages
 WHERE room_id = ANY(%s) AND event_type = ANY(%s) AND state_key = ''
 ORDER BY room_id, event_type, timestamp DESC, event_id DESC
"""
MEMBERS_SQL = """
SELECT m.room_id, m.state_key, m.timestamp, m.content ->> 'displayname'
  FROM unnest(%s::text[], %s::text[]) AS p(room_id, user_id)
  JOIN archived_messages m ON m.room_id = p.room_id AND m.event_type = 'm.room.member' AND m.state_key = p.user_id
"""


def room_state_events(conn: psycopg.Connection, room_ids: list[str]) -> list[tuple[str, str, int, object]]:
    """(room_id, type, timestamp, content) of the newest name, alias and encryption event of each room."""
    return [tuple(row) for row in conn.execute(ROOM_STATE_SQL, (room_ids, list(ROOM_STATE_TYPES))).fetchall()]


def member_names(conn: psycopg.Connection, pairs: list[tuple[str, str]]) -> list[tuple[str, str, int, str | None]]:
    """(room_id, user_id, timestamp, display name) of every archived membership of the pairs."""
    rows = conn.execute(MEMBERS_SQL, ([r for r, _ in pairs], [u for _, u in pairs])).fetchall()
    return [tuple(row) for row in rows]
