"""DB-writer stage: one transaction per batch, rows and cursor together."""
from __future__ import annotations

import time

from mxarchiverd.db import connect_with_retry
from mxarchiverd.sinks.archive_db import write_batch
from mxarchiverd.workers.stage import Message, TransformStage


class DbWriter(TransformStage):
    role = "dbwriter"

    def open(self) -> None:
        assert self.config.archive_dsn is not None
        deadline = time.monotonic() + self.config.daemon.startup_timeout
        self.conn = connect_with_retry(self.config.archive_dsn, purpose="dbwriter", deadline=deadline)
        self.archived = 0
        self.batches = 0

    def close(self) -> None:
        self.conn.close()

    def handle(self, message: Message) -> list[Message]:
        result = write_batch(self.conn, message, purge=self.config.processing.redaction_policy == "purge")
        self.archived += result.inserted
        self.batches += 1
        return []

    def stats(self) -> dict[str, float]:
        return {"archived": float(self.archived), "batches": float(self.batches)}
