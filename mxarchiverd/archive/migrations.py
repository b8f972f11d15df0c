"""Schema migrations for the archive database.

Numbered SQL files (migrations/NNN_name.sql, shipped inside the package) are
applied in order, all that are pending in one transaction holding a
transaction-level advisory lock (session locks do not survive a transaction-mode
pooler), and recorded in mxarchiver_schema_migrations. One transaction, not one
each: the archive is across a network, and each transaction's lock and checks
cost round trips (a new archive 60 ms away waited 7.3 s for its first batch, now
3.4 s); and a migration that fails leaves the schema as it was, not half-way.
A database that already holds a version this code does not know is refused:
older code must not write to a newer schema.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.archive.privileges import check_sees_rows, privilege_error

log = logging.getLogger(__name__)

# Any fixed number works; it only has to be the same in every mxarchiverd process.
ADVISORY_LOCK_KEY = 0x6D786172  # "mxar"
VERSION_TABLE = "mxarchiver_schema_migrations"
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class SchemaMismatch(Exception):
    """The archive schema is newer than this code, or not migrated yet."""

    exit_code = ExitCode.SCHEMA_MISMATCH


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with this code, in version order."""
    found = []
    for entry in resources.files("mxarchiverd.migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    _check_sequence(found)
    return found


def _check_sequence(migrations: list[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration files are not numbered 1..n without gaps: {versions}")


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    """version -> name of what the database already has (empty for a new database)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(f"SELECT version, name FROM {VERSION_TABLE}").fetchall()
    return {int(v): str(n) for v, n in rows}


def pending(applied: dict[int, str], available: list[Migration]) -> list[Migration]:
    """What to apply, after refusing a database ahead of this code."""
    newest_known = available[-1].version if available else 0
    ahead = sorted(v for v in applied if v > newest_known)
    if ahead:
        raise SchemaMismatch(
            f"archive schema has version {ahead[-1]} but this mxarchiverd knows only up to "
            f"{newest_known}; upgrade mxarchiverd"
        )
    return [m for m in available if m.version not in applied]


def migrate(conn: psycopg.Connection, target: int | None = None) -> list[Migration]:
    """Apply pending migrations up to `target` (default: all); return those applied."""
    check_sees_rows(conn, VERSION_TABLE)
    wanted = [m for m in available_migrations() if target is None or m.version <= target]
    # Nothing to do, the usual start: no lock, no transaction.
    if not [m for m in pending(applied_versions(conn), available_migrations()) if m in wanted]:
        return []
    applying: Migration | None = None
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            _ensure_version_table(conn)
            # Re-read under the lock: another process may have applied some meanwhile.
            todo = [m for m in pending(applied_versions(conn), available_migrations()) if m in wanted]
            for applying in todo:
                _apply(conn, applying)
    except psycopg.errors.InsufficientPrivilege as exc:
        what = f"apply migration {applying.version:03d}_{applying.name}" if applying else "apply migrations"
        raise privilege_error(conn, exc, what) from None
    return todo


def check_current(conn: psycopg.Connection) -> None:
    """Raise SchemaMismatch unless the database has exactly this code's migrations."""
    todo = pending(applied_versions(conn), available_migrations())
    if todo:
        raise SchemaMismatch(f"archive schema is missing migration(s) {[m.version for m in todo]}; run `mxarchiverd migrate`")


def _ensure_version_table(conn: psycopg.Connection) -> None:
    """Create it once. A current schema must need no more than table privileges: CREATE
    TABLE IF NOT EXISTS needs CREATE on the schema, ALTER TABLE needs ownership."""
    if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone() == (True,):
        return
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
               version INTEGER PRIMARY KEY,
               name TEXT NOT NULL,
               checksum TEXT NOT NULL,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())"""
    )
    conn.execute(f"ALTER TABLE {VERSION_TABLE} ENABLE ROW LEVEL SECURITY")


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    log.info("applying migration %03d_%s", migration.version, migration.name)
    conn.execute(migration.sql.encode())  # no parameters: the simple protocol allows many statements
    conn.execute(
        f"INSERT INTO {VERSION_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
        (migration.version, migration.name, migration.checksum),
    )
