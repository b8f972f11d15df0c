"""Uploader stage: claims media jobs from the archive database and transfers them.

`concurrent_uploads` transfers run on worker threads (I/O bound: disk, HTTP);
the stage's own loop only claims, collects results and extends leases, so its
heartbeat stays fresh however long a 60 MB upload takes. Behind each running
transfer it keeps one claimed job queued (HELD_PER_SLOT), so a worker that
finishes a file starts the next at once: neither the loop's round nor a claim's
round trip to the archive leaves a slot idle while jobs wait. It never reports
holding work (Stage.holding): a large file on a slow link may take longer than
the heartbeat timeout and still be progressing, and a transfer that hangs is
ended by its HTTP timeouts, its job by the lease.
"""
from __future__ import annotations

import logging
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from mxarchiverd.config import Config

from mxarchiverd.archive.connection import archive_pool
from mxarchiverd.archive.media_queue import MediaQueue, Recorded, Upload
from mxarchiverd.db import first_line, open_pool, read_only_options
from mxarchiverd.logs import ids
from mxarchiverd.media.errors import MediaRefused
from mxarchiverd.media.fetch import FetchFailed
from mxarchiverd.media.jobs import FailureKind, Job, plan_failure
from mxarchiverd.media.transfer import Stored, transfer
from mxarchiverd.metrics import instruments as metrics
from mxarchiverd.sinks.storage import ObjectStore, StorageError, open_store
from mxarchiverd.workers.stage import Message, SourceStage, opened

log = logging.getLogger(__name__)
LEASE_REFRESH = 30.0
BACKLOG_EVERY = 5.0
# Deaths are reported together at most this often: loud, but not one line per file.
DEATH_REPORT_EVERY = 10.0
IDLE_POLL = 1.0
# The loop's round while transfers run; it ends early when one of them does.
BUSY_ROUND = 0.05
# Jobs held per transfer slot: the running one and one queued behind it.
HELD_PER_SLOT = 2
# A database that is down or dropped the connection: an outage, retried like one.
DATABASE_ERRORS = (psycopg.OperationalError, PoolTimeout)


def claim_count(slots: int, held: int) -> int:
    """How many jobs to claim while holding `held` (running and queued): up to
    HELD_PER_SLOT per slot, topped up once half the queued ones have started, so
    claims come in batches rather than one archive round trip per finished file."""
    capacity = HELD_PER_SLOT * slots
    return capacity - held if held <= slots + slots // 2 else 0


class Uploader(SourceStage):
    role = "uploader"

    def open(self) -> None:
        slots = self.config.processing.concurrent_uploads
        self.archive = archive_pool(self.config, purpose="uploader", size=slots + 1)
        self.queue = MediaQueue(self.archive, self.config.supabase.storage.bucket)
        # Bot mode reads no database of Synapse's: every file comes over the media API.
        self.synapse: ConnectionPool | None = None
        if self.config.source.mode == "synapse_db":
            assert self.config.source.synapse_db_url is not None
            self.synapse = open_pool(self.config.source.synapse_db_url.value, "uploader synapse", slots,
                                     self.config.daemon.startup_timeout,
                                     options=read_only_options(self.config.source.statement_timeout))
        self.store: ObjectStore = open_store(self.config)
        # Checked in produce(), not here: storage being down must not crash-loop the
        # uploader (and with it the unit) while messages can still be archived.
        self.bucket_ready = False
        self.workdir = Path(tempfile.mkdtemp(prefix="mxarchiverd-media-"))
        self.threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="upload")
        self.running: dict[Future[None], Job] = {}
        self.next_refresh = time.monotonic() + LEASE_REFRESH
        self.counts = {"uploaded": 0, "refused": 0, "failed": 0}
        self.backlog, self.next_backlog_count = 0, 0.0
        self.dead: int | None = None  # dead jobs in the archive, as last counted
        # Reasons of the jobs this uploader dead-lettered since the last report
        # (appended on worker threads: list.append is atomic).
        self.deaths: list[str] = []
        self.next_death_report = 0.0

    def close(self) -> None:
        for threads in opened(self, "threads"):
            threads.shutdown(wait=True, cancel_futures=True)
            self._give_back_queued()
        if opened(self, "deaths"):
            self.next_death_report = 0.0
            self._report_deaths()  # what died in the last round is told before exit
        for resource in opened(self, "store", "archive", "synapse"):
            resource.close()
        for workdir in opened(self, "workdir"):
            for leftover in workdir.glob("*"):
                leftover.unlink(missing_ok=True)
            workdir.rmdir()

    def stats(self) -> dict[str, float]:
        """media_backlog: jobs waiting (pending or purge), media_dead: dead-lettered jobs;
        both counted at most every BACKLOG_EVERY seconds."""
        if time.monotonic() >= self.next_backlog_count:
            self.next_backlog_count = time.monotonic() + BACKLOG_EVERY
            self.backlog = self.queue.backlog()
            self._dead_counted(self.queue.dead())
        return {"media_backlog": float(self.backlog), "errors": float(self.counts["failed"] + self.counts["refused"]),
                "media_dead": float(self.dead or 0)}

    def _dead_counted(self, dead: int) -> None:
        if self.dead is None and dead:
            log.warning("%d media job(s) are dead in the archive; `mxarchiverd status` shows why,"
                        " `mxarchiverd media-retry` queues them again", dead)
        self.dead = dead

    def _report_deaths(self) -> None:
        """A WARNING with the count of jobs that died since the last report and the last reason."""
        if not self.deaths or time.monotonic() < self.next_death_report:
            return
        self.next_death_report = time.monotonic() + DEATH_REPORT_EVERY
        died, self.deaths = self.deaths, []
        log.warning("%d media job(s) went dead (retries used up); last reason: %s; `mxarchiverd status` counts them,"
                    " `mxarchiverd media-retry` queues them again once the cause is fixed", len(died), died[-1])

    def produce(self) -> tuple[list[Message], float]:
        if not self.bucket_ready and not self._ensure_bucket():
            return [], self.config.processing.retry_delay
        self._collect()
        self._report_deaths()
        self._refresh_leases()
        wanted = claim_count(self.config.processing.concurrent_uploads, len(self.running))
        for job in self._claim(wanted) if wanted else []:
            # More jobs than worker threads: the pool's queue holds the rest until a thread is free.
            self.running[self.threads.submit(self._run, job)] = job
        if not self.running:
            # Idle, the job queue is checked every second at most: media latency stays far
            # under the seed's 30 s while an idle daemon costs next to no CPU.
            return [], max(self.config.processing.poll_interval, IDLE_POLL)
        # Back as soon as a transfer ends, to top the queue up before the workers drain it.
        wait(list(self.running), timeout=BUSY_ROUND, return_when=FIRST_COMPLETED)
        return [], 0.0

    def _ensure_bucket(self) -> bool:
        try:
            self.store.ensure_bucket()
        except StorageError as exc:
            log.warning("storage bucket not ready, media waits: %s", exc)
            return False
        self.bucket_ready = True
        return True

    def _claim(self, limit: int) -> list[Job]:
        return self.queue.claim(limit)

    def _collect(self) -> None:
        for future in [f for f in self.running if f.done()]:
            job = self.running.pop(future)
            self.beat()  # a finished transfer is progress
            failure = future.exception()
            if failure is not None:
                self._worker_failed(job, failure)

    def _worker_failed(self, job: Job, failure: BaseException) -> None:
        """A worker raised what _run does not expect: the job is due again after retry_delay
        (as any failure) instead of waiting out its lease; a database error, as any outage,
        uses up no attempt. If the archive cannot take even that, the lease is the fallback."""
        log.error("media job %s of %s in %s failed unexpectedly: %s: %s", job.id, job.event_id, job.room_id,
                  type(failure).__name__, failure, extra=ids(job.room_id, job.event_id))
        kind: FailureKind = "transient" if isinstance(failure, DATABASE_ERRORS) else "counted"
        try:
            self._fail(job, kind, f"unexpected {type(failure).__name__}: {failure}")
        except DATABASE_ERRORS as exc:
            log.warning("media job %s stays leased until the archive answers: %s", job.id, first_line(exc))

    def _give_back_queued(self) -> None:
        """Jobs still queued at the stop are due again at once, not after their lease."""
        queued = [job.id for future, job in self.running.items() if future.cancelled()]
        if not queued:
            return
        try:
            self.queue.release(queued)
        except DATABASE_ERRORS as exc:
            log.warning("%d queued media job(s) stay leased until their lease ends: %s", len(queued), first_line(exc))

    def _refresh_leases(self) -> None:
        if time.monotonic() < self.next_refresh or not self.running:
            return
        self.next_refresh = time.monotonic() + LEASE_REFRESH
        self.queue.extend_leases([j.id for j in self.running.values()])

    # --- on worker threads -------------------------------------------------

    def _run(self, job: Job) -> None:
        if job.state == "purge":
            self._purge(job)
            return
        try:
            stored = self._transfer(job)
        except DATABASE_ERRORS as exc:
            self._fail(job, "transient", f"Synapse's database: {first_line(exc)}")
        except MediaRefused as exc:
            self._fail(job, "refused", exc.reason)
        except StorageError as exc:
            self._fail(job, "transient" if exc.retryable else "refused", str(exc))
        except (FetchFailed, OSError) as exc:
            self._fail(job, "counted", str(exc))
        else:
            self._record(job, stored)

    def _transfer(self, job: Job) -> Stored:
        """transfer() on a checked connection; one the server dropped while we held it
        (broken) is thrown away by the pool, and the job goes again on a fresh one."""
        if self.synapse is None:
            return transfer(job, self.config, None, self.store, self.workdir, token=bot_media_token(self.config))
        for attempt in (1, 2):
            with self.synapse.connection() as synapse:
                try:
                    return transfer(job, self.config, synapse, self.store, self.workdir)
                except psycopg.OperationalError:
                    if attempt == 2 or not synapse.broken:
                        raise
        raise AssertionError("unreachable")

    def _record(self, job: Job, stored: Stored) -> None:
        upload = Upload(stored.object_path, self.store.object_url(stored.object_path), stored.filename, stored.size,
                        stored.mime_type, stored.sha256)
        recorded = self.queue.record(job, upload, analysis=self.config.processing.analysis_jobs,
                                     delete=self._delete_quietly)
        if recorded is Recorded.DONE:
            self.counts["uploaded"] += 1
            metrics.media_stored(stored.size)

    def _delete_quietly(self, object_path: str) -> bool:
        try:
            self.store.delete(object_path)
        except StorageError as exc:
            log.warning("could not take back the upload %s: %s", object_path, exc)
            return False
        return True

    def _fail(self, job: Job, kind: FailureKind, reason: str) -> None:
        processing = self.config.processing
        plan = plan_failure(kind, job.attempts, processing.retry_attempts, processing.retry_delay)
        log.warning("media job %s (%s of %s in %s): %s -> %s", job.id, job.matrix_url[:120], job.event_id, job.room_id,
                    reason, plan.state, extra=ids(job.room_id, job.event_id))
        self.queue.reschedule(job, plan, reason)
        self.counts["refused" if plan.state == "refused" else "failed"] += 1
        metrics.media_failed(plan.state)
        if plan.state == "dead":
            self.deaths.append(reason[:300])

    def _purge(self, job: Job) -> None:
        """Drop a redacted message's archived file; the object goes only if nothing else uses it."""
        try:
            self.queue.purge(job, self.store.delete)
        except StorageError as exc:
            log.warning("could not delete purged media of %s in %s yet: %s", job.event_id, job.room_id, exc,
                        extra=ids(job.room_id, job.event_id))
            # the lease runs out and the purge is tried again


def bot_media_token(config: Config) -> str | None:
    """The bot's own access token (the poller keeps it in the state directory; it may
    change after a soft logout, so it is read for each transfer)."""
    from mxarchiverd.sources.matrix_sync.session import load_session, session_path

    stored = load_session(session_path(config.matrix.state_dir))
    return stored.access_token if stored else None
