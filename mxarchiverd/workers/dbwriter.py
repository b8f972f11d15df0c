"""DB-writer stage: one transaction per batch, rows and cursor together, one round trip (archive/batches.py)."""
from __future__ import annotations

import time

from mxarchiverd.archive.batches import write_batch
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.metrics import instruments as metrics
from mxarchiverd.pipeline.merging import merge_batches
from mxarchiverd.pipeline.messages import RowBatch
from mxarchiverd.workers.stage import Message, TransformStage, opened


# At most this many batches' rows in one transaction, and as many taken from the queue
# at once (and read ahead): bounds a transaction's size and duration, and the
# dbwriter's memory (its PSS peaked at 35 MB in a 200,000-event backfill:
# bench/resources.py). Fewer merge too rarely to pay a remote archive's round trips.
MERGED_BATCHES = 4


class DbWriter(TransformStage):
    role = "dbwriter"
    takes_waiting = MERGED_BATCHES
    # The next transaction's batches arrive while this one is out (workers/prefetch.py).
    prefetch = MERGED_BATCHES

    def open(self) -> None:
        deadline = time.monotonic() + self.config.daemon.startup_timeout
        # Autocommit: write_batch sends BEGIN ... COMMIT itself, in one round trip.
        self.conn = open_archive(self.config, purpose="dbwriter", deadline=deadline, autocommit=True)
        self.archived = 0
        self.batches = 0

    def close(self) -> None:
        for conn in opened(self, "conn"):
            conn.close()

    def handle_many(self, messages: list[Message]) -> list[Message]:
        # Batches that queued up while the last transaction was out share one: the
        # further the archive, the larger the transactions (pipeline/merging.py).
        batches = [m for m in messages if isinstance(m, RowBatch)]
        assert len(batches) == len(messages)
        for batch in merge_batches(batches, MERGED_BATCHES * self.config.processing.batch_size):
            self.handle(batch)
        return []

    def handle(self, message: Message) -> list[Message]:
        assert isinstance(message, RowBatch)
        started = time.monotonic()
        result = write_batch(self.conn, message, purge=self.config.processing.redaction_policy == "purge",
                             fence=self.fence)
        metrics.batch_stored([row.get("event_type") or "unknown" for row in message.rows], result.inserted,
                             time.monotonic() - started,
                             max((row.get("timestamp") or 0 for row in message.rows), default=None))
        self.archived += result.inserted
        self.batches += 1
        return []

    def stats(self) -> dict[str, float]:
        return {"archived": float(self.archived), "batches": float(self.batches)}
