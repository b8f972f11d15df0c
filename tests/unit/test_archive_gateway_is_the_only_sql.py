"""Only the archive gateway (mxarchiverd/archive/) talks SQL to the archive database.

Two checks over the package's source: the archive's address (config.archive_dsn)
is read nowhere else, and no SQL text outside the gateway names a table that a
migration creates. Synapse's and the bridge's tables are other databases and
may be queried by their sources.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "mxarchiverd"
GATEWAY = PACKAGE / "archive"
# A statement: SQL text starts with its verb (prose that mentions "update" does not).
STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|ALTER|CREATE|ANALYZE|TRUNCATE|DROP|COPY)\b", re.I)


def archive_tables() -> set[str]:
    created = set()
    for sql in (REPO / "migrations").glob("*.sql"):
        created |= {m.lower() for m in re.findall(r"CREATE\s+(?:TABLE|VIEW)\s+(?:IF NOT EXISTS\s+)?(\w+)",
                                                   sql.read_text(), re.I)}
    return created


def outside_gateway() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if GATEWAY not in p.parents and "config" not in p.relative_to(PACKAGE).parts]


def test_the_archive_tables_are_found() -> None:
    assert {"archived_messages", "media_jobs", "monitored_rooms", "archive_cursors", "sync_state"} <= archive_tables()


def test_the_archive_address_is_read_only_by_the_gateway() -> None:
    readers = [f"{path.relative_to(REPO)}:{node.lineno}" for path in outside_gateway()
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Attribute) and node.attr == "archive_dsn"]
    assert readers == [], "config.archive_dsn read outside mxarchiverd/archive/: " + ", ".join(readers)


def test_no_sql_outside_the_gateway_names_an_archive_table() -> None:
    tables = archive_tables()
    found = []
    for path in outside_gateway():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and STATEMENT.match(node.value):
                named = {t for t in tables if re.search(rf"\b{t}\b", node.value, re.I)}
                if named:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} ({', '.join(sorted(named))})")
    assert found == [], "SQL on archive tables outside mxarchiverd/archive/: " + "; ".join(found)
