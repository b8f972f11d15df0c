"""Planner statistics for the archive while it grows fast (a first backfill).

Autovacuum's analyze follows a table that grows from empty too slowly: the
redaction and edit statements then fall back to sequential scans that grow
with the table (bench/README.md has the figures). So the dbwriter analyzes
archived_messages whenever it has doubled since the last time.
"""
from __future__ import annotations

import psycopg

ESTIMATED_ROWS_SQL = "SELECT reltuples::bigint FROM pg_class WHERE oid = 'archived_messages'::regclass"
ANALYZE_SQL = "ANALYZE archived_messages"


def should_analyze(rows_at_last: int, rows_now: int, floor: int = 5_000) -> bool:
    """Analyze once the table holds at least `floor` rows and twice what it held last time."""
    return rows_now >= floor and rows_now >= 2 * max(rows_at_last, 1)


class StatisticsUpkeep:
    """Counts what the dbwriter inserts and analyzes when the table has doubled."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.rows_at_last_analyze = self._estimated_rows()
        self.inserted_since = 0

    def after_batch(self, inserted: int) -> bool:
        """Call after each committed batch; True if it analyzed."""
        self.inserted_since += inserted
        total = self.rows_at_last_analyze + self.inserted_since
        if not should_analyze(self.rows_at_last_analyze, total):
            return False
        with self.conn.transaction():
            self.conn.execute(ANALYZE_SQL)
        self.rows_at_last_analyze, self.inserted_since = total, 0
        return True

    def _estimated_rows(self) -> int:
        row = self.conn.execute(ESTIMATED_ROWS_SQL).fetchone()
        self.conn.commit()
        return max(int(row[0]) if row else 0, 0)
