"""An archive role that does not own the existing tables: `migrate` and `run` say which
role lacks what and how to grant it, and exit 77, which the unit does not restart (it
was an InsufficientPrivilege traceback and exit 1: a restart loop). A current schema
needs no ownership at all."""
from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.archive.migrations import migrate

REPO = Path(__file__).parents[2]


@dataclass(frozen=True)
class Roles:
    owner: str   # created the archive tables
    daemon: str  # the service's role: every table privilege, but not the owner
    archive: str  # the archive database (superuser DSN)

    def dsn(self, role: str) -> str:
        return make_conninfo(self.archive, user=role)


@pytest.fixture
def roles(fresh_db: str) -> Iterator[Roles]:
    suffix = secrets.token_hex(4)
    found = Roles(f"tables_owner_{suffix}", f"archiver_{suffix}", fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for role in (found.owner, found.daemon):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(sql.Identifier(found.owner)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(found.daemon)))
    try:
        yield found
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            both = sql.SQL(", ").join([sql.Identifier(found.owner), sql.Identifier(found.daemon)])
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(both))
            conn.execute(sql.SQL("DROP ROLE {}").format(both))


def tables_made_by_the_owner(roles: Roles, target: int | None) -> None:
    with psycopg.connect(roles.dsn(roles.owner), autocommit=True) as conn:
        migrate(conn, target=target)
        for what in ("TABLES", "SEQUENCES"):
            conn.execute(sql.SQL("GRANT ALL ON ALL {} IN SCHEMA public TO {}").format(
                sql.SQL(what), sql.Identifier(roles.daemon)))


def mxarchiverd(tmp_path: Path, archive_dsn: str, command: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.yaml"
    config.write_text(f"source:\n  synapse_db_url: '{archive_dsn}'\narchive:\n  database_url: '{archive_dsn}'\n"
                      f"  storage_path: {tmp_path / 'media'}\ndaemon:\n  startup_timeout: 5s\n")
    return subprocess.run([sys.executable, "-m", "mxarchiverd", "--config", str(config), command],
                          capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == ExitCode.PERMISSION, result.stderr
    assert "Traceback" not in result.stderr and "InsufficientPrivilege" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_role_that_row_level_security_hides_the_tables_from(roles: Roles, tmp_path: Path) -> None:
    """It read the archive as empty, tried to create it again, and crashed."""
    tables_made_by_the_owner(roles, target=3)
    for command in ("migrate", "run"):
        assert_refused(mxarchiverd(tmp_path, roles.dsn(roles.daemon), command), f'role "{roles.daemon}"',
                       f'owned by role "{roles.owner}"', "row level security", f"GRANT {roles.owner} TO {roles.daemon}")
    # The advice works: with it, the same role migrates the rest.
    with psycopg.connect(roles.archive, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(roles.owner), sql.Identifier(roles.daemon)))
    result = mxarchiverd(tmp_path, roles.dsn(roles.daemon), "migrate")
    assert result.returncode == 0 and "004_" in result.stdout, result.stderr


def test_a_role_that_does_not_own_a_table_a_migration_alters(roles: Roles, tmp_path: Path) -> None:
    with psycopg.connect(roles.archive, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(roles.daemon)))
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(roles.daemon)))
    tables_made_by_the_owner(roles, target=3)
    assert_refused(mxarchiverd(tmp_path, roles.dsn(roles.daemon), "migrate"), f'role "{roles.daemon}"',
                   "cannot apply migration 004_", "must be owner of", f'owned by role "{roles.owner}"',
                   f"GRANT {roles.owner} TO {roles.daemon}")


def test_a_current_schema_needs_no_ownership(roles: Roles, tmp_path: Path) -> None:
    """Only table privileges (and seeing the rows): no CREATE on the schema, no ALTER."""
    with psycopg.connect(roles.archive, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} BYPASSRLS").format(sql.Identifier(roles.daemon)))
    tables_made_by_the_owner(roles, target=None)
    result = mxarchiverd(tmp_path, roles.dsn(roles.daemon), "migrate")
    assert result.returncode == 0 and "none (already current)" in result.stdout, result.stderr


def test_a_role_that_may_not_create_in_the_schema(roles: Roles, tmp_path: Path) -> None:
    assert_refused(mxarchiverd(tmp_path, roles.dsn(roles.daemon), "migrate"), f'role "{roles.daemon}"',
                   "permission denied for schema public", f"GRANT USAGE, CREATE ON SCHEMA public TO {roles.daemon}")
