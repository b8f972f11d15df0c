"""`mxarchiverd backfill --room R`: read one room's whole history again, resumable.

DB mode does the work in this process, through the normal pipeline: the room's
history read (monitored_rooms.history_cursor, the follower's own per-room read)
is reset, then read batch by batch from Synapse, enriched by the Enricher stage
and written by archive/batches.write_batch with a RoomHistoryCursor, so each
batch commits its position with its rows. Interrupted, the read stays pending:
`backfill` run again resumes it from that position, and so does the running
daemon's poller, which reads pending history rooms anyway. Why not only mark
the room for the daemon: an operator asking for a backfill wants to watch it
finish (a bar with rate and ETA), also while the daemon is stopped; and the two
never conflict, because rows are keyed by event id and the cursor only grows.

Bot mode cannot read a room from here: the bot's device and crypto store belong
to the daemon (one device for life, its store locked by the running poller). So
the room gets a history pagination job (room_pagination, paging /messages from
the live end back to m.room.create), which the daemon's poller loads and pages
at its next start; each page commits its resume token with its rows, as every
bot-mode job does, so it is resumable too.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from mxarchiverd.archive import audit
from mxarchiverd.archive.batches import write_batch
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.archive.cursors import load_stream_cursors
from mxarchiverd.archive.rooms import MIN_ORDERING
from mxarchiverd.config import Config
from mxarchiverd.pipeline.cursors import RoomHistoryCursor
from mxarchiverd.pipeline.messages import EventBatch, RowBatch
from mxarchiverd.progress import progress

log = logging.getLogger(__name__)


class NotMonitored(ValueError):
    """backfill --room names a room the archive does not know."""


@dataclass(frozen=True)
class BackfillResult:
    room_id: str
    read: int          # events read from Synapse
    inserted: int      # of those, new to the archive
    resumed: bool      # a read already under way was continued


def queue_bot_history(config: Config, room_id: str) -> tuple[str, bool]:
    """Bot mode: (the room's pending history job, whether it was queued now)."""
    import uuid

    with open_archive(config, purpose="backfill", autocommit=True) as archive:
        if audit.room_entry(archive, room_id) is None:
            raise NotMonitored(f"--room {room_id}: not a monitored room (config rooms, or seen by the bot)")
        return audit.queue_history_job(archive, room_id, f"backfill-{uuid.uuid4().hex}")


def backfill_room(config: Config, room_id: str) -> BackfillResult:
    from mxarchiverd.sources.synapse_db.audit import room_history_size
    from mxarchiverd.sources.synapse_db.reader import SynapseReader
    from mxarchiverd.sources.synapse_db.report import open_synapse
    from mxarchiverd.workers.enricher import Enricher

    with open_archive(config, purpose="backfill", autocommit=True) as archive, \
         open_synapse(config, "backfill synapse", timeout_factor=6) as source:
        before = audit.room_entry(archive, room_id)
        if before is None:
            raise NotMonitored(f"--room {room_id}: not a monitored room (config rooms, or seen by the archiver)")
        room = audit.reset_room_history(archive, room_id, load_stream_cursors(archive).get("events", 0))
        assert room is not None
        cursor = room.history_cursor if room.history_cursor is not None else MIN_ORDERING
        total = room_history_size(source, room_id, cursor, room.history_upto)
        enricher = Enricher(config, lambda: None)
        enricher.open()
        reader, limit = SynapseReader(source), config.processing.batch_size
        purge = config.processing.redaction_policy == "purge"
        read = inserted = 0
        try:
            with progress(f"backfill {room_id}", total=total, unit="event") as bar:
                while True:
                    events = reader.room_history(room_id, cursor, room.history_upto, limit)
                    full = len(events) >= limit
                    cursor = events[-1]["stream_ordering"] if events else room.history_upto
                    batch = EventBatch(RoomHistoryCursor(room_id, cursor, done=not full),
                                       [e for e in events if not e["soft_failed"]])
                    for message in enricher.handle(batch):
                        assert isinstance(message, RowBatch)
                        inserted += write_batch(archive, message, purge=purge).inserted
                    read += len(events)
                    bar.update(len(events))
                    if not full:
                        break
        finally:
            enricher.close()
    return BackfillResult(room_id, read, inserted, resumed=not before.history_done)
