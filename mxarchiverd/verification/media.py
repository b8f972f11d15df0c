"""verify --media: every attachment is stored, and the stored bytes are the recorded ones.

The references come from the archived events themselves (classify.media_refs,
the same function that queued them), so a job that was never created shows up.
Every done job's object is read back from storage, streamed, and its size and
sha256 compared with archived_media; objects shared by several jobs (a forwarded
file) are read once. What Synapse still has is asked only for the problems found.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from mxarchiverd.archive.audit import MediaJobFact, MediaRow
from mxarchiverd.classify import media_refs
from mxarchiverd.progress import progress
from mxarchiverd.sinks.storage import ObjectStore, StorageError
from mxarchiverd.sinks.storage.base import digest_object
from mxarchiverd.verification.problems import MediaReport, Problem, sort_key

RefKey = tuple[str, str, str]  # event id, media kind, mxc
# (size, sha256) of a stored object, or None if storage does not have it.
ReadBack = Callable[[str], "tuple[int, str] | None"]
# mxc -> "on disk", "known", "gone"; None where the source cannot say (bot mode).
SourceHas = Callable[[str], "str | None"]


def expected_refs(rows: Iterable[MediaRow], thumbnails: bool) -> dict[RefKey, str]:
    """(event, kind, mxc) -> room of every attachment the archived messages reference."""
    found: dict[RefKey, str] = {}
    for row in rows:
        content = row.content if isinstance(row.content, dict) else {}
        for ref in media_refs(row.event_type, content):
            if thumbnails or ref.kind == "file":
                found[(row.event_id, ref.kind, ref.matrix_url)] = row.room_id
    return found


def job_problem(job: MediaJobFact, read_back: ReadBack) -> Problem | None:
    """The one thing wrong with a done or dead job, if anything (pure but for read_back)."""
    def problem(kind: str, detail: str) -> Problem:
        return Problem(kind, job.room_id, job.event_id, f"{job.kind}: {detail}", job_id=job.id,
                       matrix_url=job.matrix_url)

    if job.state == "dead":
        return problem("media_dead", job.last_error or "no reason recorded")
    if job.state != "done":
        return None
    if not job.recorded or not job.storage_path:
        return problem("media_unrecorded", "archived_media has no row for it")
    stored = read_back(job.storage_path)
    if stored is None:
        return problem("media_object_missing", f"storage has no object {job.storage_path}")
    size, sha256 = stored
    if job.file_size is not None and size != job.file_size:
        return problem("media_size_differs", f"{job.storage_path} has {size} bytes, recorded {job.file_size}")
    if job.sha256 and sha256 != job.sha256:
        return problem("media_sha256_differs", f"{job.storage_path} has sha256 {sha256}, recorded {job.sha256}")
    return None


def check_media(rows: list[MediaRow], jobs: list[MediaJobFact], store: ObjectStore, *, thumbnails: bool,
                source_has: SourceHas) -> MediaReport:
    refs = expected_refs(rows, thumbnails)
    by_key = {(j.event_id, j.kind, j.matrix_url): j for j in jobs}
    problems = [Problem("media_no_job", room, event_id, f"{kind}: no media job", matrix_url=mxc)
                for (event_id, kind, mxc), room in refs.items() if (event_id, kind, mxc) not in by_key]
    reader = StreamedReads(store)
    to_read = [j for j in jobs if j.state == "done" and j.recorded]
    with progress("verify --media", total=sum(j.file_size or 0 for j in to_read), unit="B") as bar:
        for job in jobs:
            before = reader.bytes_read
            found = job_problem(job, reader.read)
            bar.update(reader.bytes_read - before)
            if found is not None:
                problems.append(found)
    problems = [_with_source(p, source_has) for p in problems]
    return MediaReport(checked=reader.objects, bytes_read=reader.bytes_read,
                       pending=sum(1 for j in jobs if j.state in ("pending", "purge")),
                       refused=sum(1 for j in jobs if j.state == "refused"),
                       problems=tuple(sorted(problems, key=sort_key)))


def _with_source(problem: Problem, source_has: SourceHas) -> Problem:
    return replace(problem, source_has=source_has(problem.matrix_url)) if problem.matrix_url else problem


class StreamedReads:
    """Reads objects back once each, streamed; counts what it read."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.seen: dict[str, tuple[int, str] | None] = {}
        self.objects = 0
        self.bytes_read = 0

    def read(self, object_path: str) -> tuple[int, str] | None:
        if object_path not in self.seen:
            self.seen[object_path] = self._digest(object_path)
        return self.seen[object_path]

    def _digest(self, object_path: str) -> tuple[int, str] | None:
        try:
            size, sha256 = digest_object(self.store, object_path)
        except StorageError as exc:
            if exc.code == "404":
                return None
            raise
        self.objects += 1
        self.bytes_read += size
        return size, sha256
