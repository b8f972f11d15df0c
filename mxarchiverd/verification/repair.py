"""verify --repair: re-archive exactly what verify found missing or wrong.

Events go through the normal pipeline, in this process: read by id from
Synapse (the poller's own query), classified and enriched by the Enricher stage,
written by archive/batches.write_batch, which applies redactions and edits the
way it does for every batch. A row that exists is not written again, but the
redactions and edits that involve it are applied again, which is what repairs
an unapplied redaction or a changed content. The batches carry a RepairCursor:
they move no cursor. Media jobs are queued again for the uploader (the running
daemon's, or the next start's): a file is never uploaded from here.

A problem is unrepairable when nothing here can bring it back: a hole the bot
could not see, media whose file Synapse no longer has. Those stay, and verify
exits 4.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import psycopg

from mxarchiverd.archive.audit import clear_redactions, requeue_media_jobs, restore_original_contents
from mxarchiverd.archive.batches import write_batch
from mxarchiverd.config import Config
from mxarchiverd.pipeline.cursors import RepairCursor
from mxarchiverd.pipeline.messages import EventBatch, RowBatch
from mxarchiverd.progress import progress
from mxarchiverd.verification.problems import MEDIA_KINDS, Problem, Repair

log = logging.getLogger(__name__)

# kind -> which events to read again: the problem's own, its related one, or both.
REREAD: dict[str, tuple[bool, bool]] = {
    "missing": (True, False),
    "redaction_not_applied": (True, True),
    # Not re-read: the batch would apply the archived redaction again. Only the mark goes.
    "redaction_not_in_source": (False, False),
    # With a latest edit: re-read both and the batch applies it; with none left, the
    # original content is restored instead (repair() does that).
    "edit_differs": (True, True),
    "media_no_job": (True, False),
}
QUEUED_AGAIN = MEDIA_KINDS - {"media_no_job"}


def events_to_reread(problems: Sequence[Problem]) -> list[str]:
    """Event ids to push through the pipeline again, each once, in the order found."""
    ids: dict[str, None] = {}
    for problem in problems:
        own, related = REREAD.get(problem.kind, (False, False))
        if own and problem.event_id:
            ids.setdefault(problem.event_id)
        if related and problem.related_event_id:
            ids.setdefault(problem.related_event_id)
    return list(ids)


def unrepairable(problems: Sequence[Problem], bot_mode: bool) -> list[Problem]:
    """What repair leaves as it is: holes; media Synapse no longer has; in bot mode,
    anything but media jobs (there is no source to read events from by id)."""
    def cannot(problem: Problem) -> bool:
        if problem.kind == "hole":
            return True
        if problem.kind in QUEUED_AGAIN:
            return problem.source_has == "gone"
        return bot_mode
    return [p for p in problems if cannot(p)]


def media_jobs_to_queue(problems: Sequence[Problem], skip: Sequence[Problem]) -> list[int]:
    return sorted({p.job_id for p in problems if p.kind in QUEUED_AGAIN and p.job_id is not None and p not in skip})


def repair(config: Config, archive: psycopg.Connection, problems: Sequence[Problem]) -> Repair:
    bot_mode = config.source.mode == "matrix_sync"
    left = unrepairable(problems, bot_mode)
    done: dict[str, int] = {}
    if not bot_mode:
        cleared = clear_redactions(archive, [p.event_id for p in problems
                                             if p.kind == "redaction_not_in_source" and p.event_id])
        if cleared:
            done["redaction marks cleared"] = len(cleared)
        restored = restore_original_contents(archive, [p.event_id for p in problems if p.kind == "edit_differs"
                                                       and p.event_id and p.related_event_id is None])
        if restored:
            done["original contents restored"] = len(restored)
        ids = events_to_reread(problems)
        if ids:
            done["events re-archived"] = rearchive(config, archive, ids)
    queued = requeue_media_jobs(archive, media_jobs_to_queue(problems, left))
    if queued:
        done["media jobs queued again"] = queued
    for problem in left:
        log.warning("cannot repair %s in %s (%s): %s", problem.kind, problem.room_id, problem.event_id or "-",
                    problem.detail or "nothing here can bring it back")
    return Repair(done, tuple(left))


def rearchive(config: Config, archive: psycopg.Connection, event_ids: list[str]) -> int:
    """Read the events from Synapse and write them through enricher and write_batch."""
    from mxarchiverd.sources.synapse_db.report import open_synapse
    from mxarchiverd.sources.synapse_db.reader import SynapseReader
    from mxarchiverd.workers.enricher import Enricher

    enricher = Enricher(config, lambda: None)
    enricher.open()
    purge = config.processing.redaction_policy == "purge"
    written = 0
    try:
        with open_synapse(config, "verify repair synapse", timeout_factor=6) as source, \
             progress("verify --repair", total=len(event_ids), unit="event") as bar:
            reader = SynapseReader(source)
            for chunk in _chunks(event_ids, config.processing.batch_size):
                events = [e for e in reader.events_by_id(chunk) if not e["soft_failed"]]
                for message in enricher.handle(EventBatch(RepairCursor(), events)):
                    assert isinstance(message, RowBatch)
                    write_batch(archive, message, purge=purge)
                written += len(events)
                bar.update(len(chunk))
    finally:
        enricher.close()
    return written


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]
