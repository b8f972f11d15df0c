"""The archive schema: seed 000 exactly, idempotent migrate, refusal of newer schemas, RLS."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.archive.migrations import SchemaMismatch, applied_versions, available_migrations, check_current, migrate
from tests.support.postgres import PgServer

SEED_TABLES = ("archived_messages", "archived_media", "monitored_rooms")
SEED_DDL = (Path(__file__).parents[2] / "migrations" / "001_initial_schema.sql").read_text()


def catalog(dsn: str, *, only_seed_columns: dict[str, set[str]] | None = None) -> dict[str, object]:
    """Columns (type, default, nullability), constraints and indexes of the seed tables."""
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            """SELECT table_name, column_name, data_type, column_default, is_nullable
                 FROM information_schema.columns WHERE table_name = ANY(%s) ORDER BY 1, 2""",
            (list(SEED_TABLES),)).fetchall()
        constraints = conn.execute(
            """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                WHERE conrelid::regclass::text = ANY(%s) ORDER BY 1, 2""", (list(SEED_TABLES),)).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) ORDER BY 1, 2",
            (list(SEED_TABLES),)).fetchall()
    if only_seed_columns is not None:
        columns = [c for c in columns if c[1] in only_seed_columns[c[0]]]
    return {"columns": columns, "constraints": constraints, "indexes": indexes}


@pytest.fixture
def seed_reference(pg_server: PgServer) -> str:
    dsn = pg_server.create_database("seedref")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SEED_DDL.encode())
    return dsn


def test_first_migration_is_exactly_the_seed_schema(fresh_db: str, seed_reference: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert [m.version for m in migrate(conn, target=1)] == [1]
    assert catalog(fresh_db) == catalog(seed_reference)


def test_full_migration_keeps_every_seed_column_constraint_and_index(fresh_db: str, seed_reference: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
    seed = catalog(seed_reference)
    seed_columns: dict[str, set[str]] = {t: set() for t in SEED_TABLES}
    for table, column, *_ in seed["columns"]:  # type: ignore[union-attr]
        seed_columns[table].add(column)
    after = catalog(fresh_db, only_seed_columns=seed_columns)
    assert after["columns"] == seed["columns"]
    assert set(seed["constraints"]) <= set(after["constraints"])  # type: ignore[arg-type]
    assert set(seed["indexes"]) <= set(after["indexes"])  # type: ignore[arg-type]


def test_migrate_twice_changes_nothing(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        first = migrate(conn)
        before = catalog(fresh_db)
        assert migrate(conn) == []
        assert [m.version for m in first] == [m.version for m in available_migrations()]
        assert sorted(applied_versions(conn)) == [m.version for m in available_migrations()]
        check_current(conn)
    assert catalog(fresh_db) == before


def test_a_newer_schema_is_refused(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
        newest = available_migrations()[-1].version
        conn.execute("INSERT INTO mxarchiver_schema_migrations (version, name, checksum) VALUES (%s, 'future', 'x')",
                     (newest + 1,))
        with pytest.raises(SchemaMismatch, match="upgrade mxarchiverd"):
            migrate(conn)


def test_migrate_command_is_idempotent_and_exits_65_on_newer_schema(fresh_db: str, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"archive:\n  database_url: {fresh_db}\n")
    run = [sys.executable, "-m", "mxarchiverd", "--config", str(config), "migrate"]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "001_initial_schema" in first.stdout
    second = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "already current" in second.stdout
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("INSERT INTO mxarchiver_schema_migrations VALUES (999, 'future', 'x')")
    third = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert third.returncode == 65 and "upgrade mxarchiverd" in third.stderr


def archive_tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def test_supabase_anon_role_reads_nothing_and_writes_nothing(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
        conn.execute("""DO $$ BEGIN
                          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
                        END $$""")
        # As Supabase does: the API roles get table privileges; RLS is what stops them.
        conn.execute("GRANT USAGE ON SCHEMA public TO anon")
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO anon")
        conn.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon")
        conn.execute("""INSERT INTO archived_messages (event_id, room_id, sender, timestamp, message_type, content)
                        VALUES ('$e', '!r:x', '@u:x', 1, 'm.text', '{}')""")
        conn.execute("INSERT INTO monitored_rooms (room_id) VALUES ('!r:x')")
        tables = archive_tables(conn)
        assert {"archived_messages", "archived_media", "monitored_rooms", "media_jobs", "archive_cursors"} <= set(tables)
        for table in tables + ["messages", "media", "reactions", "message_versions"]:
            with conn.transaction():
                conn.execute("SET LOCAL ROLE anon")
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        for table in tables:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                with conn.transaction():
                    conn.execute("SET LOCAL ROLE anon")
                    conn.execute(f"INSERT INTO {table} DEFAULT VALUES")
        # The archiver's own role (the table owner) still sees its row.
        assert conn.execute("SELECT count(*) FROM archived_messages").fetchone() == (1,)
