"""Uploader stage: claims media jobs from the archive database and transfers them.

`concurrent_uploads` transfers run on worker threads (I/O bound: disk, HTTP);
the stage's own loop only claims, collects results and extends leases, so its
heartbeat stays fresh however long a 60 MB upload takes.
"""
from __future__ import annotations

import logging
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool

from mxarchiverd.db import DatabaseUnavailable, read_only_options
from mxarchiverd.media import jobs as sql
from mxarchiverd.media.errors import MediaRefused
from mxarchiverd.media.fetch import FetchFailed
from mxarchiverd.media.jobs import Job, plan_failure
from mxarchiverd.media.transfer import Stored, transfer
from mxarchiverd.sinks.storage import ObjectStore, StorageError, open_store
from mxarchiverd.workers.stage import SourceStage

log = logging.getLogger(__name__)
LEASE_REFRESH = 30.0
BACKLOG_EVERY = 5.0
IDLE_POLL = 1.0


class Uploader(SourceStage):
    role = "uploader"

    def open(self) -> None:
        slots = self.config.processing.concurrent_uploads
        assert self.config.archive_dsn is not None and self.config.source.synapse_db_url is not None
        self.archive = _pool(self.config.archive_dsn, "uploader", slots + 1, self.config.daemon.startup_timeout)
        self.synapse = _pool(self.config.source.synapse_db_url.value, "uploader synapse", slots,
                             self.config.daemon.startup_timeout,
                             read_only_options(self.config.source.statement_timeout))
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

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
        self.store.close()
        self.archive.close()
        self.synapse.close()
        for leftover in self.workdir.glob("*"):
            leftover.unlink(missing_ok=True)
        self.workdir.rmdir()

    def stats(self) -> dict[str, float]:
        """media_backlog: jobs waiting (pending or purge), counted at most every BACKLOG_EVERY seconds."""
        if time.monotonic() >= self.next_backlog_count:
            self.next_backlog_count = time.monotonic() + BACKLOG_EVERY
            with self.archive.connection() as conn:
                self.backlog = conn.execute(sql.BACKLOG_SQL).fetchone()[0]
        return {"media_backlog": float(self.backlog), "errors": float(self.counts["failed"] + self.counts["refused"])}

    def produce(self) -> tuple[list[dict[str, object]], float]:
        if not self.bucket_ready and not self._ensure_bucket():
            return [], self.config.processing.retry_delay
        self._collect()
        self._refresh_leases()
        free = self.config.processing.concurrent_uploads - len(self.running)
        claimed = self._claim(free) if free > 0 else []
        for job in claimed:
            self.running[self.threads.submit(self._run, job)] = job
        # Idle, the job queue is checked every second at most: media latency stays far
        # under the seed's 30 s while an idle daemon costs next to no CPU.
        return [], 0.05 if claimed or self.running else max(self.config.processing.poll_interval, IDLE_POLL)

    def _ensure_bucket(self) -> bool:
        try:
            self.store.ensure_bucket()
        except StorageError as exc:
            log.warning("storage bucket not ready, media waits: %s", exc)
            return False
        self.bucket_ready = True
        return True

    def _claim(self, limit: int) -> list[Job]:
        with self.archive.connection() as conn:
            rows = conn.execute(sql.CLAIM_SQL, {"lease": sql.LEASE_SECONDS, "limit": limit}).fetchall()
        return [Job(*row) for row in rows]

    def _collect(self) -> None:
        for future in [f for f in self.running if f.done()]:
            job = self.running.pop(future)
            if future.exception() is not None:
                log.error("media job %s failed unexpectedly: %s", job.id, future.exception())

    def _refresh_leases(self) -> None:
        if time.monotonic() < self.next_refresh or not self.running:
            return
        self.next_refresh = time.monotonic() + LEASE_REFRESH
        with self.archive.connection() as conn:
            conn.execute(sql.EXTEND_LEASES_SQL, {"lease": sql.LEASE_SECONDS, "ids": [j.id for j in self.running.values()]})

    # --- on worker threads -------------------------------------------------

    def _run(self, job: Job) -> None:
        if job.state == "purge":
            self._purge(job)
            return
        try:
            with self.synapse.connection() as synapse:
                stored = transfer(job, self.config, synapse, self.store, self.workdir)
        except MediaRefused as exc:
            self._fail(job, "refused", exc.reason)
        except StorageError as exc:
            self._fail(job, "transient" if exc.retryable else "refused", str(exc))
        except (FetchFailed, OSError) as exc:
            self._fail(job, "counted", str(exc))
        else:
            self._record(job, stored)

    def _record(self, job: Job, stored: Stored) -> None:
        bucket = self.config.supabase.storage.bucket
        with self.archive.connection() as conn, conn.transaction():
            _lock_object(conn, stored.object_path)
            if _deleted_since_claim(conn, job) and _upload_again(conn, job):
                return
            if conn.execute(sql.MARK_DONE_SQL, {"id": job.id}).fetchone() is None:
                self._release_lost_job(conn, job, stored.object_path)
                return
            media_id = conn.execute(sql.RECORD_MEDIA_SQL, {
                "event_id": job.event_id, "media_type": sql.media_type_label(job.media_type),
                "original_filename": stored.filename, "file_size": stored.size, "mime_type": stored.mime_type,
                "matrix_url": job.matrix_url, "storage_bucket": bucket, "storage_path": stored.object_path,
                "public_url": self.store.object_url(stored.object_path), "media_kind": job.media_kind,
                "sha256": stored.sha256, "encrypted": job.encrypted_file is not None,
            }).fetchone()[0]
            if self.config.processing.analysis_jobs and job.media_kind == "file":
                conn.execute(sql.ANALYSIS_JOB_SQL, {"media_id": media_id, "event_id": job.event_id,
                                                    "storage_bucket": bucket, "storage_path": stored.object_path,
                                                    "mime_type": stored.mime_type})
        self.counts["uploaded"] += 1

    def _release_lost_job(self, conn: psycopg.Connection, job: Job, object_path: str) -> None:
        """The job left 'pending' while we uploaded: purged (take our copy back out) or
        finished by an uploader that claimed it after our lease ran out (keep it)."""
        row = conn.execute(sql.JOB_STATE_SQL, {"id": job.id}).fetchone()
        state = row[0] if row else None
        if not sql.should_delete_object(state, self._still_used(conn, job, object_path)):
            return
        try:
            self.store.delete(object_path)
        except StorageError as exc:
            log.warning("could not take back the upload of purged %s: %s", job.event_id, exc)
            return
        conn.execute(sql.OBJECT_DELETED_SQL, {"id": job.id})

    def _fail(self, job: Job, kind: sql.FailureKind, reason: str) -> None:
        processing = self.config.processing
        plan = plan_failure(kind, job.attempts, processing.retry_attempts, processing.retry_delay)
        log.warning("media job %s (%s of %s): %s -> %s", job.id, job.matrix_url[:120], job.event_id, reason, plan.state)
        with self.archive.connection() as conn:
            conn.execute(sql.RESCHEDULE_SQL, {"id": job.id, "state": plan.state, "counted": plan.counted,
                                              "error": reason[:1000], "delay": plan.delay})
        self.counts["refused" if plan.state == "refused" else "failed"] += 1

    def _purge(self, job: Job) -> None:
        """Drop a redacted message's archived file; the object goes only if nothing else uses it."""
        path = job.object_path
        try:
            with self.archive.connection() as conn, conn.transaction():
                _lock_object(conn, path)
                if sql.should_delete_object(job.state, self._still_used(conn, job, path)):
                    self.store.delete(path)
                    conn.execute(sql.OBJECT_DELETED_SQL, {"id": job.id})
                conn.execute(sql.PURGED_SQL, {"id": job.id})
        except StorageError as exc:
            log.warning("could not delete purged media of %s yet: %s", job.event_id, exc)
            # the lease runs out and the purge is tried again

    def _still_used(self, conn: psycopg.Connection, job: Job, object_path: str) -> bool:
        return bool(conn.execute(sql.LIVE_REFERENCE_SQL, {
            "matrix_url": job.matrix_url, "media_kind": job.media_kind, "id": job.id, "event_id": job.event_id,
            "bucket": self.config.supabase.storage.bucket, "path": object_path,
        }).fetchone()[0])


def _lock_object(conn: psycopg.Connection, object_path: str) -> None:
    """Serialise deleting an object with recording an upload of it (held until commit)."""
    conn.execute(sql.OBJECT_LOCK_SQL, {"space": sql.OBJECT_LOCK_SPACE, "path": object_path})


def _upload_again(conn: psycopg.Connection, job: Job) -> bool:
    """Another message's purge deleted this object, maybe after our upload: rather than
    record a missing file, the job (if still ours to finish) is due again at once."""
    return conn.execute(sql.RESCHEDULE_SQL, {
        "id": job.id, "state": "pending", "counted": 0, "delay": 0.0,
        "error": "the object was deleted by a concurrent purge; uploading again",
    }).rowcount == 1


def _deleted_since_claim(conn: psycopg.Connection, job: Job) -> bool:
    if job.claimed_at is None:
        return False
    return bool(conn.execute(sql.DELETED_SINCE_SQL, {
        "matrix_url": job.matrix_url, "media_kind": job.media_kind, "claimed_at": job.claimed_at,
    }).fetchone()[0])


def _pool(dsn: str, purpose: str, size: int, timeout: float, options: str | None = None) -> ConnectionPool:
    """options: libpq startup options (a source's read-only session); None for the archive,
    which may sit behind a transaction-mode pooler that refuses them."""
    kwargs: dict[str, object] = {"autocommit": True, "prepare_threshold": None,
                                 "application_name": f"mxarchiverd {purpose}"}
    if options is not None:
        kwargs["options"] = options
    pool = ConnectionPool(dsn, min_size=1, max_size=size, open=False, name=purpose, kwargs=kwargs)
    try:
        pool.open(wait=True, timeout=max(timeout, 1.0))
    except Exception:  # noqa: BLE001 - psycopg_pool raises PoolTimeout after its own retries
        pool.close()
        raise DatabaseUnavailable(f"{purpose} database unreachable") from None
    return pool
