"""Media jobs: what a job is and what becomes of it when it fails (pure).

The queue itself (claims with a lease, finishing, retrying, dead-lettering,
purges) is in the archive gateway, archive/media_queue.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mxarchiverd.media.paths import parse_mxc, storage_object_path

TRANSIENT_MAX_DELAY = 300.0

FailureKind = Literal["refused", "transient", "counted"]


@dataclass(frozen=True)
class Job:
    id: int
    event_id: str
    media_kind: str
    matrix_url: str
    encrypted_file: dict[str, Any] | None
    media_type: str
    original_filename: str | None
    mime_type: str | None
    declared_size: int | None
    state: str
    attempts: int
    claimed_at: datetime | None = None  # the archive database's clock at the claim

    @property
    def object_path(self) -> str:
        """The storage key this job writes; jobs of the same mxc and kind share it."""
        kind = "original" if self.media_kind == "file" else "thumbnail"
        return storage_object_path(parse_mxc(self.matrix_url), kind)


@dataclass(frozen=True)
class Reschedule:
    state: str
    counted: int
    delay: float


def plan_failure(kind: FailureKind, attempts: int, retry_attempts: int, retry_delay: float) -> Reschedule:
    """What a failed job becomes.

    refused: never retried (policy, unsafe mxc, storage said 413/415).
    transient: storage or network trouble; retried without using up attempts, so an
    outage of any length loses nothing. counted: anything else; after retry_attempts
    the job is dead-lettered (`mxarchiverd media-retry` revives it).
    """
    if kind == "refused":
        return Reschedule("refused", 0, 0.0)
    if kind == "transient":
        return Reschedule("pending", 0, min(retry_delay, TRANSIENT_MAX_DELAY))
    if attempts + 1 >= retry_attempts:
        return Reschedule("dead", 1, 0.0)
    return Reschedule("pending", 1, retry_delay * 2 ** attempts)


def should_delete_object(job_state: str | None, live_reference: bool) -> bool:
    """Whether an uploader may delete the object of a job it no longer owns.

    Only a purged job gives its object up (None: the job row itself is gone); one
    finished by another uploader whose lease outlived ours is done and keeps it.
    Even then the object stays while anything else still uses it: a forward of the
    same mxc has the same object.
    """
    return job_state in (None, "purge", "purged") and not live_reference


def media_type_label(media_type: str) -> str:
    """archived_media.media_type: image, video, audio, file, sticker."""
    return media_type.removeprefix("m.")
