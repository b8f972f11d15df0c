"""What the archive role lacks, and the grant that fixes it, when PostgreSQL refuses it.

A common setup (Supabase's SQL editor, an earlier install under another role) leaves the
archive tables owned by a role other than the service's. Then a migration that alters a
table is refused with "must be owner of table ...". That is no crash and no outage: an
operator must grant something, so the message names the role, what it lacks, and the
statement to run, and the exit code (PERMISSION) is one the unit does not restart.
"""
from __future__ import annotations

import re

import psycopg

from mxarchiverd.db import first_line
from mxarchiverd.exitcodes import ExitCode

_NOT_OWNER = re.compile(r"^must be owner of (?:table|view|materialized view|sequence|relation|index) (?P<name>\S+)")
_SCHEMA = re.compile(r"^permission denied for schema (?P<name>\S+)")
_OBJECT = re.compile(r"^permission denied for (?:table|view|sequence|relation) (?P<name>\S+)")
_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")
OWNER_SQL = "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s)"
# Row level security (on for every archive table, with no policy) hides every row from a
# role that neither owns the table (membership in the owner role counts) nor bypasses RLS.
SEES_ROWS_SQL = """
SELECT pg_get_userbyid(c.relowner), current_user,
       NOT c.relrowsecurity OR pg_has_role(current_user, c.relowner, 'USAGE') OR r.rolbypassrls OR r.rolsuper
  FROM pg_class c JOIN pg_roles r ON r.rolname = current_user
 WHERE c.oid = to_regclass(%s)
"""
SCHEMA_OWNER_SQL = "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s"


class ArchivePrivilegeError(Exception):
    """The archive role may not do what the archiver needs; the message says what to grant."""

    exit_code = ExitCode.PERMISSION


def ident(name: str) -> str:
    """A role or object name as it must be written in SQL."""
    return name if _PLAIN_NAME.match(name) else '"' + name.replace('"', '""') + '"'


def advice(role: str, problem: str, owner: str | None, schema: str) -> str:
    """The statement(s) that give `role` what `problem` says it lacks; `owner` owns the object."""
    who = f'role "{owner}"' if owner else "the owner"
    if _NOT_OWNER.match(problem) and owner:
        return (f"as {owner} (or a superuser) run `GRANT {ident(owner)} TO {ident(role)}` (the owner's rights),"
                f" or run `mxarchiverd migrate` once as {owner}")
    if (match := _SCHEMA.match(problem)) is not None:
        return (f"as {who} of schema {match['name']} (or a superuser) run "
                f"`GRANT USAGE, CREATE ON SCHEMA {ident(match['name'])} TO {ident(role)}`")
    if _OBJECT.match(problem):
        return (f"as {who} of the archive tables (or a superuser) run `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL"
                f" TABLES IN SCHEMA {ident(schema)} TO {ident(role)}` and `GRANT USAGE ON ALL SEQUENCES IN SCHEMA"
                f" {ident(schema)} TO {ident(role)}`")
    return "connect as the role that owns the archive tables, or grant this role what the message names"


def check_sees_rows(conn: psycopg.Connection, table: str) -> None:
    """Refuse a role for which row level security hides `table`'s rows: it would read the
    archive as empty (and migrate it again) and every write would be rejected."""
    row = conn.execute(SEES_ROWS_SQL, (table,)).fetchone()
    if row is None or row[2]:
        return
    owner, role = str(row[0]), str(row[1])
    raise ArchivePrivilegeError(
        f'archive database: role "{role}" sees no rows of the archive tables: they are owned by role "{owner}"'
        " and have row level security on (so that Supabase's anon and authenticated roles read nothing);"
        f" as {owner} (or a superuser) run `GRANT {ident(owner)} TO {ident(role)}`, or connect as {owner}")


def privilege_error(conn: psycopg.Connection, exc: psycopg.Error, doing: str) -> ArchivePrivilegeError:
    """Describe a refusal on `conn` (its transaction already rolled back) for the operator."""
    problem = first_line(exc)
    row = conn.execute("SELECT current_user, current_schema()").fetchone()
    role, schema = (str(row[0]), str(row[1] or "public")) if row else ("?", "public")
    owner = _owner_of(conn, problem)
    owned = f' (owned by role "{owner}")' if owner else ""
    return ArchivePrivilegeError(f'archive database: role "{role}" cannot {doing}: {problem}{owned}; '
                                 f"{advice(role, problem, owner, schema)}")


def _owner_of(conn: psycopg.Connection, problem: str) -> str | None:
    for pattern, query in ((_NOT_OWNER, OWNER_SQL), (_OBJECT, OWNER_SQL), (_SCHEMA, SCHEMA_OWNER_SQL)):
        match = pattern.match(problem)
        if match:
            row = conn.execute(query, (match["name"],)).fetchone()
            return str(row[0]) if row and row[0] else None
    return None
