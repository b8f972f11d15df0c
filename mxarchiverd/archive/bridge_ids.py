"""WhatsApp ids that arrive after their message was archived.

mautrix bridgev2 inserts its `message` row after Synapse returned the event id,
so the poller can read (and the dbwriter store) a bridged message before the
bridge row exists. For LATE_WINDOW after archiving, such rows are looked up
again and filled in. The state is in the archive (whatsapp_chat_id set,
whatsapp_message_id NULL), so a restart loses nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import orjson
import psycopg

LATE_WINDOW_MINUTES = 10
BATCH = 500

AWAITING_SQL = f"""
SELECT event_id FROM archived_messages
 WHERE whatsapp_chat_id IS NOT NULL AND whatsapp_message_id IS NULL
   AND archived_at > NOW() - INTERVAL '{LATE_WINDOW_MINUTES} minutes'
   AND event_type IN ('m.room.message', 'm.sticker') AND NOT redacted
 ORDER BY archived_at LIMIT {BATCH}
"""
FILL_SQL = """
UPDATE archived_messages m
   SET whatsapp_message_id = f.message_id, whatsapp_sender_id = f.sender_id,
       sender_phone = COALESCE(m.sender_phone, f.phone), updated_at = NOW()
  FROM jsonb_to_recordset(%s::jsonb) AS f(event_id text, message_id text, sender_id text, phone text)
 WHERE m.event_id = f.event_id AND m.whatsapp_message_id IS NULL
"""


class BridgeIds(NamedTuple):
    """What the bridge's message and ghost rows say about one archived event."""

    message_id: str | None
    sender_id: str | None
    phone: str | None


# event ids -> the bridge's ids of those it knows (sources/bridge_db.py answers it).
BridgeLookup = Callable[[list[str]], Mapping[str, BridgeIds]]


def fill_late_bridge_ids(archive: psycopg.Connection, lookup: BridgeLookup) -> int:
    """Look the waiting rows up in the bridge once more; return how many were filled."""
    waiting = [row[0] for row in archive.execute(AWAITING_SQL).fetchall()]
    if not waiting:
        return 0
    found = [{"event_id": event_id, "message_id": ids.message_id, "sender_id": ids.sender_id, "phone": ids.phone}
             for event_id, ids in lookup(waiting).items()]
    if not found:
        return 0
    return archive.execute(FILL_SQL, (orjson.dumps(found).decode(),)).rowcount
