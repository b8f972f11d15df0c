"""DB-writer stage: one transaction per batch, rows and cursor together."""
from __future__ import annotations

import time

from mxarchiverd.db import connect_with_retry
from mxarchiverd.sinks.archive_db import write_batch
from mxarchiverd.workers.stage import Message, TransformStage, opened


class DbWriter(TransformStage):
    role = "dbwriter"

    def open(self) -> None:
        assert self.config.archive_dsn is not None
        deadline = time.monotonic() + self.config.daemon.startup_timeout
        self.conn = connect_with_retry(self.config.archive_dsn, purpose="dbwriter", deadline=deadline)
        self.archived = 0
        self.batches = 0
        self.rows_at_last_analyze = self._estimated_rows()
        self.archived_at_last_analyze = 0

    def close(self) -> None:
        for conn in opened(self, "conn"):
            conn.close()

    def handle(self, message: Message) -> list[Message]:
        result = write_batch(self.conn, message, purge=self.config.processing.redaction_policy == "purge")
        self.archived += result.inserted
        self.batches += 1
        self._maybe_analyze()
        return []

    def _estimated_rows(self) -> int:
        row = self.conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'archived_messages'::regclass").fetchone()
        self.conn.commit()
        return max(int(row[0]) if row else 0, 0)

    def _maybe_analyze(self) -> None:
        """Refresh the planner's statistics whenever the archive has doubled since the last time.

        A first backfill grows the table from empty faster than autovacuum's
        analyze follows, and the redaction and edit statements then fall back to
        sequential scans that grow with the table (bench/README.md has the figures).
        """
        total = self.rows_at_last_analyze + self.archived_since_analyze()
        if should_analyze(self.rows_at_last_analyze, total):
            with self.conn.transaction():
                self.conn.execute("ANALYZE archived_messages")
            self.rows_at_last_analyze, self.archived_at_last_analyze = total, self.archived

    def archived_since_analyze(self) -> int:
        return self.archived - self.archived_at_last_analyze

    def stats(self) -> dict[str, float]:
        return {"archived": float(self.archived), "batches": float(self.batches)}


def should_analyze(rows_at_last: int, rows_now: int, floor: int = 5_000) -> bool:
    """Analyze once the table holds at least `floor` rows and twice what it held last time."""
    return rows_now >= floor and rows_now >= 2 * max(rows_at_last, 1)
