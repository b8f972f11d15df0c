"""The daemon's Prometheus metrics, and the calls the stages make to move them.

Off unless `metrics.listen` is set: then the supervisor gives the daemon run a
private directory (directory.py) before any child starts, prometheus-client runs
in multiprocess mode (each process writes its own memory-mapped files there,
no thread, no lock shared between processes), and the "metrics" child sums
every process's files on each scrape (workers/metrics.py). When off, every call here
returns at once and prometheus-client is never imported.

| metric                                   | type      | set by     | what |
|------------------------------------------|-----------|------------|------|
| mxarchiverd_events_archived_total        | counter   | dbwriter   | rows newly stored, by event_type (1) |
| mxarchiverd_batches_written_total        | counter   | dbwriter   | batches committed |
| mxarchiverd_batch_write_seconds          | histogram | dbwriter   | time to write one batch (rows, relations, cursor) |
| mxarchiverd_archive_lag_seconds          | gauge     | dbwriter   | age of the newest event of the latest batch, at commit |
| mxarchiverd_source_lag_positions         | gauge     | poller     | positions behind the source's bound |
| mxarchiverd_media_uploaded_total         | counter   | uploader   | files stored |
| mxarchiverd_media_uploaded_bytes_total   | counter   | uploader   | bytes stored |
| mxarchiverd_media_failed_total           | counter   | uploader   | failed attempts by outcome: retry, refused, dead |
| mxarchiverd_pipeline_queue_depth         | gauge     | supervisor | batches waiting between two stages |
| mxarchiverd_stage_restarts_total         | counter   | supervisor | restarts of a stage after its first start |
| mxarchiverd_media_jobs                   | gauge     | metrics    | media jobs by state, from the archive at scrape time |
| mxarchiverd_quarantined_events           | gauge     | metrics    | rows in quarantined_events |
| mxarchiverd_verify_*                     | gauge     | metrics    | the latest `verify`: when, exit code, problems by kind |

(1) "unknown" for a batch partly stored before (read again after a restart): which of
its rows are new is not known, only how many.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "mxarchiverd_"
# Seconds: a batch is written in milliseconds normally, in seconds over a slow link.
WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_made: dict[str, Any] = {}


def enabled() -> bool:
    return bool(os.environ.get(DIRECTORY_VARIABLE))


def _metric(name: str) -> Any:
    """The metric object, created on first use (so prometheus-client is imported only when on)."""
    if name not in _made:
        _made.update(_create())
    return _made[name]


def _create() -> dict[str, Any]:
    from prometheus_client import Counter as PCounter
    from prometheus_client import Gauge, Histogram

    p = PREFIX
    return {
        "archived": PCounter(f"{p}events_archived", "Rows newly stored in the archive", ["event_type"]),
        "batches": PCounter(f"{p}batches_written", "Batches committed by the dbwriter"),
        "write": Histogram(f"{p}batch_write_seconds", "Time to write one batch", buckets=WRITE_BUCKETS),
        "archive_lag": Gauge(f"{p}archive_lag_seconds", "Age of the newest event of the latest stored batch",
                             multiprocess_mode="livemax"),
        "source_lag": Gauge(f"{p}source_lag_positions", "Stream positions the poller is behind the source's bound",
                            multiprocess_mode="livemax"),
        "uploaded": PCounter(f"{p}media_uploaded", "Media files stored"),
        "uploaded_bytes": PCounter(f"{p}media_uploaded_bytes", "Media bytes stored"),
        "media_failed": PCounter(f"{p}media_failed", "Failed media attempts by outcome", ["outcome"]),
        "queue_depth": Gauge(f"{p}pipeline_queue_depth", "Batches waiting between two stages", ["queue"],
                             multiprocess_mode="livemax"),
        "restarts": PCounter(f"{p}stage_restarts", "Restarts of a stage after its first start", ["stage"]),
    }


def batch_stored(event_types: Iterable[str], inserted: int, seconds: float, newest_ts_ms: int | None) -> None:
    """After a batch committed: what it stored and how long that took."""
    if not enabled():
        return
    types = Counter(event_types)
    archived = _metric("archived")
    if inserted == sum(types.values()):
        for event_type, count in types.items():
            archived.labels(event_type=event_type).inc(count)
    elif inserted:
        # Some rows were stored before (a batch read again after a restart): which
        # ones is not known here, so the new ones are counted without a type.
        archived.labels(event_type="unknown").inc(inserted)
    _metric("batches").inc()
    _metric("write").observe(seconds)
    if newest_ts_ms:
        _metric("archive_lag").set(max(0.0, time.time() - newest_ts_ms / 1000))


def source_lag(positions: float) -> None:
    if enabled():
        _metric("source_lag").set(positions)


def media_stored(size: int) -> None:
    if enabled():
        _metric("uploaded").inc()
        _metric("uploaded_bytes").inc(size)


def media_failed(outcome: str) -> None:
    """outcome: the job's new state ("pending" counts as a retry, "refused", "dead")."""
    if enabled():
        _metric("media_failed").labels(outcome="retry" if outcome == "pending" else outcome).inc()


def queue_depths(depths: Mapping[str, int]) -> None:
    if enabled():
        gauge = _metric("queue_depth")
        for queue, depth in depths.items():
            gauge.labels(queue=queue).set(depth)


def stage_restarted(role: str) -> None:
    if enabled():
        _metric("restarts").labels(stage=role).inc()


def process_gone(pid: int) -> None:
    """A child exited: its live gauges no longer count (its counters still do)."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
