"""What the archive says about itself, for `status` and `verify` (read-only queries).

The source's side of each report is the source's (sources/*/report.py); these
are the archive's facts, the same in both modes, plus bot mode's coverage
(memberships, holes, pagination).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from mxarchiverd.archive.cursors import load_stream_cursors
from mxarchiverd.archive.media_queue import job_counts, last_dead_reason
from mxarchiverd.archive.migrations import applied_versions, available_migrations
from mxarchiverd.db import scalar

ROOMS_SQL = """
SELECT count(*) FILTER (WHERE enabled), count(*) FILTER (WHERE NOT enabled),
       count(*) FILTER (WHERE enabled AND NOT history_done)
  FROM monitored_rooms
"""
MESSAGES_SQL = """
SELECT count(*), count(*) FILTER (WHERE redacted), max(timestamp) FROM archived_messages
"""
ROOM_EVENT_IDS_SQL = "SELECT event_id FROM archived_messages WHERE room_id = %s"


@dataclass(frozen=True)
class ArchiveFacts:
    schema_version: int
    schema_expected: int
    cursors: dict[str, int]
    rooms_enabled: int
    rooms_disabled: int
    rooms_history_pending: int
    messages: int
    redacted: int
    quarantined: int
    media: dict[str, int] = field(default_factory=dict)
    media_dead_last_error: str | None = None
    newest_archived_ts: int | None = None


def archive_facts(conn: psycopg.Connection) -> ArchiveFacts:
    rooms = conn.execute(ROOMS_SQL).fetchone() or (0, 0, 0)
    messages = conn.execute(MESSAGES_SQL).fetchone() or (0, 0, None)
    return ArchiveFacts(
        schema_version=max(applied_versions(conn), default=0),
        schema_expected=available_migrations()[-1].version,
        cursors=load_stream_cursors(conn),
        rooms_enabled=rooms[0], rooms_disabled=rooms[1], rooms_history_pending=rooms[2],
        messages=messages[0], redacted=messages[1], newest_archived_ts=messages[2],
        quarantined=int(scalar(conn.execute("SELECT count(*) FROM quarantined_events"))),
        media=job_counts(conn), media_dead_last_error=last_dead_reason(conn))


def archived_event_ids(conn: psycopg.Connection, room_id: str) -> set[str]:
    return {row[0] for row in conn.execute(ROOM_EVENT_IDS_SQL, (room_id,))}


# -- bot mode's coverage -------------------------------------------------------------

SYNC_SQL = "SELECT account, next_batch, extract(epoch FROM NOW() - updated_at) FROM sync_state ORDER BY account"
MEMBERSHIP_SQL = """
SELECT room_id, bot_membership, bot_membership_reason, bot_membership_by, history_complete,
       history_lower_bound_event
  FROM monitored_rooms WHERE bot_membership IS NOT NULL ORDER BY room_id
"""
HOLES_SQL = """
SELECT room_id, kind, by_user, reason, after_event_id, after_ts, before_event_id, before_ts, state, filled_by
  FROM room_holes ORDER BY id
"""
PAGINATION_SQL = """
SELECT kind, state, count(*), sum(events_seen) FROM room_pagination GROUP BY kind, state ORDER BY kind, state
"""


@dataclass(frozen=True)
class BotCoverage:
    """What the bot has seen and not seen, from the archive alone."""

    accounts: list[dict[str, Any]]
    rooms: list[dict[str, Any]]
    holes: list[dict[str, Any]]
    pagination: list[dict[str, Any]]

    @property
    def unfilled_holes(self) -> list[dict[str, Any]]:
        return [h for h in self.holes if h["state"] != "filled"]

    @property
    def pending_pagination(self) -> int:
        return sum(p["jobs"] for p in self.pagination if p["state"] == "pending")


def bot_coverage(conn: psycopg.Connection) -> BotCoverage:
    accounts = [{"account": a, "sync_token_age_s": float(age) if age is not None else None}
                for a, _token, age in conn.execute(SYNC_SQL).fetchall()]
    rooms = [dict(zip(("room_id", "membership", "reason", "by", "history_complete", "lower_bound_event"), row,
                      strict=True)) for row in conn.execute(MEMBERSHIP_SQL).fetchall()]
    holes = [dict(zip(("room_id", "kind", "by", "reason", "after_event_id", "after_ts", "before_event_id",
                       "before_ts", "state", "filled_by"), row, strict=True)) for row in conn.execute(HOLES_SQL)]
    pagination = [{"kind": kind, "state": state, "jobs": jobs, "events": int(events or 0)}
                  for kind, state, jobs, events in conn.execute(PAGINATION_SQL)]
    return BotCoverage(accounts, rooms, holes, pagination)


# -- end-to-end encryption --------------------------------------------------------------

ENCRYPTION_SQL = """
SELECT room_id, count(*) FILTER (WHERE event_type <> 'm.room.encrypted'),
       count(*) FILTER (WHERE event_type = 'm.room.encrypted')
  FROM archived_messages WHERE encrypted GROUP BY room_id ORDER BY room_id
"""
PENDING_SQL = """
SELECT room_id, reason, COALESCE(withheld_code, ''), count(*) FROM pending_decryption
 GROUP BY room_id, reason, withheld_code ORDER BY room_id, reason
"""


def encrypted_rooms(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per room with encrypted events: decrypted, still ciphertext, and why they wait."""
    rooms = {room: {"room_id": room, "decrypted": decrypted, "encrypted": encrypted, "waiting": {}}
             for room, decrypted, encrypted in conn.execute(ENCRYPTION_SQL).fetchall()}
    for room, reason, code, count in conn.execute(PENDING_SQL).fetchall():
        if room in rooms:
            label = f"{reason} ({code})" if code else reason
            rooms[room]["waiting"][label] = count
    return list(rooms.values())
