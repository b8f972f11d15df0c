"""Bot mode's durable position: the /sync token, pagination jobs, holes, memberships.

store_sync and store_page run inside a batch's transaction (archive/cursors.py
dispatches to them), so everything a /sync or a /messages page taught the bot
is committed with the events it delivered, or not at all. The loaders run when
the follower starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from mxarchiverd.pipeline.cursors import HoleBounds, PageCursor, Pagination, SyncCursor

STORE_TOKEN_SQL = """
INSERT INTO sync_state (account, next_batch) VALUES (%(account)s, %(token)s)
ON CONFLICT (account) DO UPDATE SET next_batch = EXCLUDED.next_batch, updated_at = NOW()
"""
ROOM_TOKENS_SQL = """
UPDATE monitored_rooms SET last_sync_token = %(token)s, updated_at = NOW() WHERE room_id = ANY(%(rooms)s)
"""
OPEN_JOBS_SQL = """
INSERT INTO room_pagination (id, room_id, kind, from_token, to_token, stop_event_ids, via_admin_api, hole_id,
                             resume_token)
SELECT j.id, j.room_id, j.kind, j.from_token, j.to_token, j.stop_event_ids, j.via_admin_api,
       (SELECT h.id FROM room_holes h WHERE h.room_id = j.room_id AND h.after_event_id = j.hole_after_event_id),
       j.from_token
  FROM jsonb_to_recordset(%s::jsonb) AS j(id text, room_id text, kind text, from_token text, to_token text,
       stop_event_ids text[], via_admin_api boolean, hole_after_event_id text)
ON CONFLICT (id) DO NOTHING
"""
# A hole is keyed by its opening event; a later sync adds the closing bound.
HOLES_SQL = """
INSERT INTO room_holes (room_id, kind, by_user, reason, after_event_id, after_ts, before_event_id, before_ts, state)
SELECT h.room_id, h.kind, h.by_user, h.reason, h.after_event_id, h.after_ts, h.before_event_id, h.before_ts,
       COALESCE(h.state, CASE WHEN h.before_event_id IS NULL THEN 'open' ELSE 'closed' END)
  FROM jsonb_to_recordset(%s::jsonb) AS h(room_id text, kind text, by_user text, reason text,
       after_event_id text, after_ts bigint, before_event_id text, before_ts bigint, state text)
ON CONFLICT (room_id, after_event_id) DO UPDATE
   SET before_event_id = COALESCE(room_holes.before_event_id, EXCLUDED.before_event_id),
       before_ts = COALESCE(room_holes.before_ts, EXCLUDED.before_ts),
       state = CASE WHEN room_holes.state = 'open' AND EXCLUDED.before_event_id IS NOT NULL THEN EXCLUDED.state
                    ELSE room_holes.state END,
       updated_at = NOW()
"""
MEMBERSHIPS_SQL = """
INSERT INTO monitored_rooms (room_id, discovered_by, bot_membership, bot_membership_reason, bot_membership_by,
                             bot_membership_at)
SELECT m.room_id, 'matrix_sync', m.membership, m.reason, m.by_user,
       CASE WHEN m.at_ts IS NULL THEN NOW() ELSE mxarchiver_ms_to_timestamptz(m.at_ts) END
  FROM jsonb_to_recordset(%s::jsonb) AS m(room_id text, membership text, reason text, by_user text, at_ts bigint)
ON CONFLICT (room_id) DO UPDATE
   SET bot_membership = EXCLUDED.bot_membership, bot_membership_reason = EXCLUDED.bot_membership_reason,
       bot_membership_by = EXCLUDED.bot_membership_by, bot_membership_at = EXCLUDED.bot_membership_at,
       updated_at = NOW()
"""
WITHHELD_SQL = """
INSERT INTO withheld_keys (room_id, session_id, sender, code, reason)
SELECT w.room_id, w.session_id, w.sender, w.code, w.reason
  FROM jsonb_to_recordset(%s::jsonb) AS w(room_id text, session_id text, sender text, code text, reason text)
ON CONFLICT (room_id, session_id, sender) DO UPDATE SET code = EXCLUDED.code, reason = EXCLUDED.reason,
       received_at = NOW()
"""
PAGE_SQL = """
UPDATE room_pagination
   SET resume_token = %(resume_token)s, state = CASE WHEN %(done)s THEN 'done' ELSE 'pending' END,
       outcome = %(outcome)s, events_seen = events_seen + %(events_seen)s, create_seen = %(create_seen)s,
       restricted_by = %(restricted_by)s, lowest_event_id = COALESCE(%(lowest_event_id)s, lowest_event_id),
       lowest_ts = COALESCE(%(lowest_ts)s, lowest_ts), updated_at = NOW()
 WHERE id = %(job_id)s AND state = 'pending'
RETURNING kind, hole_id, via_admin_api
"""
ROOM_HISTORY_SQL = """
UPDATE monitored_rooms
   SET history_complete = %(complete)s,
       history_lower_bound_event = CASE WHEN %(complete)s THEN NULL ELSE %(lowest_event_id)s END,
       history_lower_bound_ts = CASE WHEN %(complete)s THEN NULL ELSE %(lowest_ts)s END,
       updated_at = NOW()
 WHERE room_id = %(room_id)s
"""
HOLE_STATE_SQL = """
UPDATE room_holes SET state = %(state)s, filled_by = %(filled_by)s, updated_at = NOW()
 WHERE id = %(hole_id)s AND state IN ('open', 'closed')
"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def store_sync(conn: psycopg.Connection, cursor: SyncCursor) -> None:
    """Everything one /sync taught; inside the transaction of its rows."""
    if cursor.holes:  # before the jobs, which refer to their holes
        conn.execute(HOLES_SQL, (_json([h.__dict__ for h in cursor.holes]),))
    if cursor.jobs:
        conn.execute(OPEN_JOBS_SQL, (_json([_job_row(job) for job in cursor.jobs]),))
    if cursor.memberships:
        conn.execute(MEMBERSHIPS_SQL, (_json([m.__dict__ for m in cursor.memberships]),))
    if cursor.rooms:
        conn.execute(ROOM_TOKENS_SQL, {"token": cursor.token, "rooms": list(cursor.rooms)})
    if cursor.withheld:
        conn.execute(WITHHELD_SQL, (_json([w.__dict__ for w in cursor.withheld]),))
    conn.execute(STORE_TOKEN_SQL, {"account": cursor.account, "token": cursor.token})


def _job_row(job: Pagination) -> dict[str, Any]:
    return {**job.__dict__, "stop_event_ids": list(job.stop_event_ids)}


def store_page(conn: psycopg.Connection, cursor: PageCursor) -> None:
    """How far one pagination job came; inside the transaction of the page's rows.

    A page of a job already done (a replay after a crash) changes nothing.
    """
    fields = {key: value for key, value in cursor.__dict__.items() if key != "then"}
    found = conn.execute(PAGE_SQL, fields).fetchone()
    if found is None or not cursor.done:
        return
    kind, hole_id, via_admin = found
    if kind == "history" and cursor.history_complete is not None:
        conn.execute(ROOM_HISTORY_SQL, {"room_id": cursor.room_id, "complete": cursor.history_complete,
                                        "lowest_event_id": cursor.lowest_event_id, "lowest_ts": cursor.lowest_ts})
    if hole_id is not None and cursor.hole_state is not None:
        filled_by = ("admin api" if via_admin else "bot") if cursor.hole_state == "filled" else None
        conn.execute(HOLE_STATE_SQL, {"hole_id": hole_id, "state": cursor.hole_state, "filled_by": filled_by})
    if cursor.then is not None:
        conn.execute(OPEN_JOBS_SQL, (_json([_job_row(cursor.then)]),))


# -- what the follower loads at start ---------------------------------------------

@dataclass(frozen=True)
class PendingJob:
    """A pagination job not done yet, and how far it had come."""

    job: Pagination
    resume_token: str | None
    create_seen: bool
    restricted_by: str | None
    lowest_event_id: str | None
    lowest_ts: int | None


PENDING_JOBS_SQL = """
SELECT j.id, j.room_id, j.kind, j.from_token, j.to_token, j.stop_event_ids, j.via_admin_api, h.after_event_id,
       j.resume_token, j.create_seen, j.restricted_by, j.lowest_event_id, j.lowest_ts
  FROM room_pagination j LEFT JOIN room_holes h ON h.id = j.hole_id
 WHERE j.state = 'pending' ORDER BY j.created_at, j.id
"""
UNFILLED_HOLES_SQL = """
SELECT room_id, kind, by_user, reason, after_event_id, after_ts, before_event_id, before_ts, NULL
  FROM room_holes WHERE state IN ('open', 'closed') ORDER BY id
"""


def load_sync_token(conn: psycopg.Connection, account: str) -> str | None:
    row = conn.execute("SELECT next_batch FROM sync_state WHERE account = %s", (account,)).fetchone()
    return row[0] if row else None


def load_pending_jobs(conn: psycopg.Connection) -> list[PendingJob]:
    jobs = []
    for row in conn.execute(PENDING_JOBS_SQL).fetchall():
        (job_id, room_id, kind, from_token, to_token, stops, admin, hole_after, resume, create_seen,
         restricted_by, lowest_id, lowest_ts) = row
        job = Pagination(job_id, room_id, kind, from_token, to_token, tuple(stops or ()), admin, hole_after)
        jobs.append(PendingJob(job, resume, create_seen, restricted_by, lowest_id, lowest_ts))
    return jobs


def load_unfilled_holes(conn: psycopg.Connection) -> list[HoleBounds]:
    """Holes still open (bot out) or closed but not paged yet, oldest first."""
    return [HoleBounds(*row) for row in conn.execute(UNFILLED_HOLES_SQL).fetchall()]


def load_memberships(conn: psycopg.Connection) -> dict[str, str]:
    """room id -> the bot's membership as last committed."""
    rows = conn.execute("SELECT room_id, bot_membership FROM monitored_rooms WHERE bot_membership IS NOT NULL")
    return dict(rows.fetchall())


NEWEST_EVENTS_SQL = """
SELECT event_id FROM archived_messages WHERE room_id = %s ORDER BY timestamp DESC, event_id DESC LIMIT %s
"""


def newest_event_ids(conn: psycopg.Connection, room_id: str, limit: int = 20) -> list[str]:
    """The room's newest archived events: where paging back from the live end may stop."""
    return [row[0] for row in conn.execute(NEWEST_EVENTS_SQL, (room_id, limit)).fetchall()]


# -- end-to-end encryption ---------------------------------------------------------------

PENDING_CIPHERTEXT_SQL = """
SELECT m.event_id, m.room_id, m.sender, m.timestamp, m.state_key, m.event
  FROM pending_decryption p JOIN archived_messages m ON m.event_id = p.event_id
 WHERE p.room_id = ANY(%(rooms)s) AND p.session_id = ANY(%(sessions)s) AND m.event_type = 'm.room.encrypted'
 ORDER BY m.timestamp LIMIT %(limit)s
"""
# Ciphertext of the given sessions whether or not it is listed pending (archives written by DB
# mode, and rows archived before this version).
CIPHERTEXT_OF_SESSIONS_SQL = """
SELECT event_id, room_id, sender, timestamp, state_key, event
  FROM archived_messages
 WHERE event_type = 'm.room.encrypted' AND room_id = ANY(%(rooms)s) AND (content ->> 'session_id') = ANY(%(sessions)s)
   AND event IS NOT NULL AND (timestamp, event_id) > (%(after_ts)s, %(after_id)s)
 ORDER BY timestamp, event_id LIMIT %(limit)s
"""
WITHHELD_LOAD_SQL = "SELECT room_id, session_id, sender, code, reason FROM withheld_keys"


@dataclass(frozen=True)
class Ciphertext:
    """An archived m.room.encrypted row, with its event as stored."""

    event_id: str
    room_id: str
    sender: str
    timestamp: int
    state_key: str | None
    event: dict[str, Any]


def pending_ciphertext(conn: psycopg.Connection, refs: list[tuple[str, str]], limit: int = 500) -> list[Ciphertext]:
    """Ciphertext listed as waiting for one of the (room, session) keys."""
    rooms, sessions = sorted({r for r, _ in refs}), sorted({s for _, s in refs})
    rows = conn.execute(PENDING_CIPHERTEXT_SQL, {"rooms": rooms, "sessions": sessions, "limit": limit}).fetchall()
    wanted = set(refs)
    return [Ciphertext(*row) for row in rows if (row[1], (row[5] or {}).get("content", {}).get("session_id")) in wanted]


def ciphertext_of_sessions(conn: psycopg.Connection, refs: list[tuple[str, str]], *, limit: int,
                           after: tuple[int, str] = (-(2**63), "")) -> list[Ciphertext]:
    """The next page of ciphertext of the sessions, in (timestamp, event id) order after `after`."""
    rooms, sessions = sorted({r for r, _ in refs}), sorted({s for _, s in refs})
    rows = conn.execute(CIPHERTEXT_OF_SESSIONS_SQL, {"rooms": rooms, "sessions": sessions, "limit": limit,
                                                     "after_ts": after[0], "after_id": after[1]}).fetchall()
    wanted = set(refs)
    return [Ciphertext(*row) for row in rows if (row[1], (row[5] or {}).get("content", {}).get("session_id")) in wanted]


def load_withheld(conn: psycopg.Connection) -> list[tuple[str, str, str, str, str | None]]:
    return [tuple(row) for row in conn.execute(WITHHELD_LOAD_SQL).fetchall()]


def pending_sessions(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every (room, session) some archived ciphertext waits for."""
    rows = conn.execute("SELECT DISTINCT room_id, session_id FROM pending_decryption WHERE session_id IS NOT NULL")
    return [tuple(row) for row in rows.fetchall()]
