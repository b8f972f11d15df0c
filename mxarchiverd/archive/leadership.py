"""The leadership lease in the archive database (migrations 011, 012): take, renew, give up, fence.

Every statement is complete in one transaction and uses no session state, so
all of it works through a transaction-mode pooler (Supavisor on port 6543,
PgBouncer): no advisory locks, no prepared statements, no session SET.
Times are the database's clock (now()), never a host's.

Fencing: the fence check runs first in every batch transaction. It locks the
lease row FOR KEY SHARE where the token is still ours. A renewal changes no key
column, so it never waits for a batch; a takeover changes `token` (UNIQUE), so
it waits until the batch in flight has committed, and every later batch of the
old leader finds another token and raises Fenced before writing anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.leadership import Fence

__all__ = ["Fence", "Fenced", "check_fence", "fence_statement", "fenced_by"]

# A takeover waits at most this long for a batch in flight; the keeper tries again next round.
TAKEOVER_LOCK_TIMEOUT_MS = 1000

# Take the lease when it is free or has expired, or when we held it already (a
# restarted keeper of the same daemon): always with a new token, so that whatever
# ran under the old one is fenced off.
ACQUIRE_SQL = """
UPDATE archive_leadership
   SET holder = %(holder)s, token = token + 1, acquired_at = now(), renewed_at = now(),
       expires_at = now() + make_interval(secs => %(lease)s)
 WHERE name = 'archive' AND (expires_at <= now() OR holder IS NULL OR holder = %(holder)s)
RETURNING token
"""
# Renew only a lease that is still ours and still running: once it expired, a
# standby may have started to take it, and we must take it anew (new token).
RENEW_SQL = """
UPDATE archive_leadership
   SET renewed_at = now(), expires_at = now() + make_interval(secs => %(lease)s)
 WHERE name = 'archive' AND holder = %(holder)s AND token = %(token)s AND expires_at > now()
RETURNING token
"""
RELEASE_SQL = """
UPDATE archive_leadership SET expires_at = now()
 WHERE name = 'archive' AND holder = %(holder)s AND token = %(token)s
"""
REGISTER_SQL = """
INSERT INTO archive_daemons AS d (holder, host, pid, is_leader) VALUES (%(holder)s, %(host)s, %(pid)s, %(leading)s)
ON CONFLICT (holder) DO UPDATE SET seen_at = now(), is_leader = excluded.is_leader, host = excluded.host,
                                   pid = excluded.pid
"""
LEAVE_SQL = "DELETE FROM archive_daemons WHERE holder = %(holder)s"
# Daemons not seen for this many lease durations are gone; their rows are dropped.
FORGET_AFTER_LEASES = 10
FORGET_SQL = "DELETE FROM archive_daemons WHERE seen_at < now() - make_interval(secs => %(age)s)"
# The fence check (migration 012): locks the lease row FOR KEY SHARE where the token
# is still ours and bounds how long the batch may sit idle in its transaction (a
# leader frozen inside a batch, SIGSTOP or a dead host, would otherwise hold the row
# lock, and with it every takeover, until TCP noticed); the token is left in the
# transaction as mxarchiverd.fence for audit triggers (the HA tests use it). Once
# the token is not ours it raises SQLSTATE FENCED_SQLSTATE, so that it also works as
# the first statement of a batch sent in one round trip (archive/batches.py).
FENCE_SQL = "SELECT mxarchiver_enter_fenced_batch(%(token)s, %(idle_ms)s)"
FENCED_SQLSTATE = "MXA75"
LEASE_SQL = """
SELECT holder, token, acquired_at, expires_at, expires_at > now() AS valid, now() AS db_now
  FROM archive_leadership WHERE name = 'archive'
"""
DAEMONS_SQL = "SELECT holder, host, pid, started_at, seen_at, is_leader FROM archive_daemons ORDER BY started_at, holder"


class Fenced(Exception):
    """This process's fencing token is no longer the lease's: another daemon leads now."""

    exit_code = ExitCode.FENCED

    def __init__(self, token: int) -> None:
        super().__init__(f"fencing token {token} is no longer current: another daemon has taken over the lease")
        self.token = token


def fence_statement(fence: Fence) -> tuple[str, dict[str, Any]]:
    """The first statement of a batch transaction under `fence` (it fails the transaction once
    another daemon leads; `fenced_by` recognises that failure)."""
    return FENCE_SQL, {"token": fence.token, "idle_ms": str(max(1000, int(fence.idle_timeout * 1000)))}


def fenced_by(error: psycopg.Error, fence: Fence | None) -> Fenced | None:
    """The Fenced to raise if `error` is the fence check's failure, else None."""
    if fence is not None and error.sqlstate == FENCED_SQLSTATE:
        return Fenced(fence.token)
    return None


def check_fence(conn: psycopg.Connection, fence: Fence | None) -> None:
    """Run the fence check on its own; raises Fenced when another daemon leads.

    None (daemon.ha off): no check, a single daemon needs none.
    """
    if fence is None:
        return
    try:
        conn.execute(*fence_statement(fence))
    except psycopg.Error as exc:
        fenced = fenced_by(exc, fence)
        if fenced is None:
            raise
        raise fenced from None


def acquire(conn: psycopg.Connection, holder: str, lease: float) -> int | None:
    """The new token if we now hold the lease, else None (another daemon holds it, or a
    batch of the old leader is still committing: try again next round)."""
    try:
        with conn.transaction():
            _bound(conn, lease)
            row = conn.execute(ACQUIRE_SQL, {"holder": holder, "lease": lease}).fetchone()
    except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
        return None
    return int(row[0]) if row else None


def renew(conn: psycopg.Connection, holder: str, token: int, lease: float) -> bool:
    """True if the lease is still ours and now runs `lease` seconds from the database's now."""
    with conn.transaction():
        _bound(conn, lease)
        return conn.execute(RENEW_SQL, {"holder": holder, "token": token, "lease": lease}).fetchone() is not None


def _bound(conn: psycopg.Connection, lease: float) -> None:
    """Transaction-local limits (SET LOCAL: nothing outlives the transaction in a pooler).
    A lease statement that cannot finish well within the lease is worth nothing."""
    statement_ms = max(TAKEOVER_LOCK_TIMEOUT_MS, int(lease * 500))
    conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                 (str(TAKEOVER_LOCK_TIMEOUT_MS), str(statement_ms)))


def release(conn: psycopg.Connection, holder: str, token: int) -> None:
    """Let a standby take over at once (a clean stop) instead of after the lease runs out."""
    with conn.transaction():
        conn.execute(RELEASE_SQL, {"holder": holder, "token": token})


def register(conn: psycopg.Connection, holder: str, host: str, pid: int, leading: bool, lease: float) -> None:
    """Show this daemon in `status` (leader or standby), and forget daemons long gone."""
    with conn.transaction():
        conn.execute(REGISTER_SQL, {"holder": holder, "host": host, "pid": pid, "leading": leading})
        conn.execute(FORGET_SQL, {"age": lease * FORGET_AFTER_LEASES})


def holder_elsewhere(conn: psycopg.Connection, holder: str, host: str, within: float) -> str | None:
    """The other host that registered under this holder name within `within` seconds, if any:
    two daemons sharing a name would take the lease from each other every round."""
    row = conn.execute("SELECT host FROM archive_daemons WHERE holder = %s AND host <> %s"
                       " AND seen_at > now() - make_interval(secs => %s)", (holder, host, within)).fetchone()
    return str(row[0]) if row else None


def leave(conn: psycopg.Connection, holder: str) -> None:
    with conn.transaction():
        conn.execute(LEAVE_SQL, {"holder": holder})


@dataclass(frozen=True)
class Lease:
    holder: str | None
    token: int
    acquired_at: datetime | None
    expires_at: datetime
    valid: bool


@dataclass(frozen=True)
class Member:
    holder: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    leading: bool


def read_lease(conn: psycopg.Connection) -> Lease | None:
    """The lease as it stands (None before migration 011)."""
    row = conn.execute(LEASE_SQL).fetchone()
    return Lease(*row[:5]) if row else None


def read_members(conn: psycopg.Connection) -> list[Member]:
    return [Member(*row) for row in conn.execute(DAEMONS_SQL).fetchall()]


def leadership_facts(conn: psycopg.Connection) -> dict[str, Any] | None:
    """For `status`: who leads since when, and the standbys (JSON-ready); None before migration 011."""
    found = conn.execute("SELECT to_regclass('archive_leadership') IS NOT NULL").fetchone()
    if not found or found[0] is not True:
        return None
    current = read_lease(conn)
    if current is None:
        return None
    members = read_members(conn)
    leader = current.holder if current.valid else None
    return {
        "holder": current.holder, "token": current.token, "valid": current.valid,
        "since": current.acquired_at.isoformat() if current.acquired_at else None,
        "expires": current.expires_at.isoformat() if current.holder else None,
        "standbys": [{"holder": m.holder, "host": m.host, "pid": m.pid, "seen_at": m.seen_at.isoformat()}
                     for m in members if m.holder != leader],
    }
