"""pg_stat_statements on the benchmark's private cluster: which statements cost what."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.support.postgres import PgServer


@dataclass(frozen=True)
class Statement:
    calls: int
    total_ms: float
    mean_ms: float
    max_ms: float
    rows: int
    query: str


def available(server: PgServer) -> bool:
    try:
        with server.admin_connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT 1 FROM pg_stat_statements LIMIT 1")
        return True
    except psycopg.Error:
        return False


def reset(server: PgServer) -> None:
    with server.admin_connect() as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def top(server: PgServer, dsn: str, limit: int = 8, order: str = "total_exec_time") -> list[Statement]:
    """The costliest statements run in the database of `dsn` since the last reset."""
    dbname = conninfo_to_dict(dsn)["dbname"]
    with server.admin_connect() as conn:
        rows = conn.execute(f"""
            SELECT s.calls, s.total_exec_time, s.mean_exec_time, s.max_exec_time, s.rows, s.query
              FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
             WHERE d.datname = %s ORDER BY s.{order} DESC LIMIT %s""", (dbname, limit)).fetchall()
    return [Statement(int(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4]), str(r[5])) for r in rows]


def totals(server: PgServer, dsn: str) -> tuple[int, float]:
    """(calls, total execution ms) of every statement in that database since the last reset."""
    dbname = conninfo_to_dict(dsn)["dbname"]
    with server.admin_connect() as conn:
        row = conn.execute("""SELECT COALESCE(sum(s.calls), 0), COALESCE(sum(s.total_exec_time), 0)
                                FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                               WHERE d.datname = %s""", (dbname,)).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def short(query: str, width: int = 110) -> str:
    return " ".join(query.split())[:width]
