"""Row level security holds for every table any migration adds (DESIGN.md §4): applied one
migration at a time, each table that appears, in any schema, must have RLS enabled, so
that Supabase's anon and authenticated roles read and write nothing of it. (Seed 000's
tables come without RLS in migration 001, unchanged; migration 002 enables it, so the
rule is checked on the fully migrated schema, naming the migration that added each table.)"""
from __future__ import annotations

import psycopg

from mxarchiverd.archive.migrations import available_migrations, migrate

TABLES_SQL = """
SELECT n.nspname || '.' || c.relname, c.relrowsecurity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""


def tables(conn: psycopg.Connection) -> dict[str, bool]:
    return dict(conn.execute(TABLES_SQL).fetchall())


def test_every_table_any_migration_creates_has_row_level_security(fresh_db: str) -> None:
    created: dict[str, int] = {}
    with psycopg.connect(fresh_db, autocommit=True, prepare_threshold=None) as conn:
        seen = tables(conn)
        for migration in available_migrations():
            migrate(conn, target=migration.version)
            now = tables(conn)
            created.update({name: migration.version for name in set(now) - set(seen)})
            seen = now
    assert "public.archived_messages" in created and "public.archive_leadership" in created, created
    assert "public.mxarchiver_schema_migrations" in created
    without_rls = sorted(f"{name} (added by migration {version:03d})" for name, version in created.items()
                         if not seen[name])
    assert without_rls == [], f"tables without row level security: {without_rls}"
