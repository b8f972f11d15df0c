"""What verify can find, what each finding means, and the exit code they add up to (pure).

| kind                    | meaning                                                           | --repair                 |
|-------------------------|-------------------------------------------------------------------|--------------------------|
| missing                 | Synapse shows the event, the archive lacks it                     | re-read it (pipeline)    |
| redaction_not_applied   | Synapse redacts the event, the archive row is not marked redacted | re-read the redaction    |
| redaction_not_in_source | the archive marks the event redacted, Synapse applies none        | clear the mark           |
| edit_differs            | the archive's content is not the latest valid edit Synapse has    | re-apply the edits       |
| hole                    | bot mode: a stretch the bot could not see, not filled             | none (the daemon pages)  |
| media_no_job            | a media reference of an archived message has no media job         | re-read the message      |
| media_dead              | the job used up its attempts                                      | queue it again           |
| media_unrecorded        | the job is done, archived_media has no row for it                 | queue it again           |
| media_object_missing    | archived_media names an object that storage does not have         | queue it again           |
| media_size_differs      | the stored object's size is not the recorded one                  | queue it again           |
| media_sha256_differs    | the stored object's sha256 is not the recorded one                | queue it again           |

Not differences, but shown: events only in the archive (Synapse's retention or
purge removed them: the reason to have an archive), media jobs still queued
(not verified yet: exit 5), media refused by policy (max_file_size, mime types).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mxarchiverd.config.units import parse_duration
from mxarchiverd.exitcodes import ExitCode

# kind -> what it says, for the text report and the README.
KINDS: dict[str, str] = {
    "missing": "in Synapse, not in the archive",
    "redaction_not_applied": "redacted in Synapse, not in the archive",
    "redaction_not_in_source": "redacted in the archive, not in Synapse",
    "edit_differs": "content is not the latest edit Synapse has",
    "hole": "a stretch the bot could not see",
    "media_no_job": "media reference without a media job",
    "media_dead": "media job dead (retries used up)",
    "media_unrecorded": "media job done, no archived_media row",
    "media_object_missing": "stored object missing",
    "media_size_differs": "stored object has another size",
    "media_sha256_differs": "stored object has another sha256",
}
MEDIA_KINDS = frozenset(kind for kind in KINDS if kind.startswith("media_"))


@dataclass(frozen=True)
class Problem:
    kind: str
    room_id: str
    event_id: str | None = None
    detail: str = ""
    # The event whose re-reading repairs it: the redaction not applied, the latest edit.
    related_event_id: str | None = None
    # media: the job, the file, and whether Synapse still has it ("on disk", "known", "gone")
    job_id: int | None = None
    matrix_url: str | None = None
    source_has: str | None = None

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind, "room_id": self.room_id, "event_id": self.event_id,
                                 "detail": self.detail}
        if self.related_event_id is not None:
            found["related_event_id"] = self.related_event_id
        if self.matrix_url is not None:
            found.update(job_id=self.job_id, matrix_url=self.matrix_url, source_has=self.source_has)
        return found


@dataclass(frozen=True)
class RoomReport:
    room_id: str
    source: int
    archived: int
    missing: tuple[str, ...]
    only_in_archive: tuple[str, ...]
    # Bot mode: stretches the bot could not see, in words (bounds and why).
    holes: tuple[str, ...] = field(default=())
    problems: tuple[Problem, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.missing and not self.holes and not self.problems


@dataclass(frozen=True)
class MediaReport:
    checked: int = 0            # stored objects read back
    bytes_read: int = 0
    pending: int = 0            # jobs still queued (pending, purge): not verified yet
    refused: int = 0            # refused by policy
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Scope:
    rooms: tuple[str, ...] = ()         # empty: every archived room
    since_ms: int | None = None         # only events sent at or after this time
    media: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"rooms": list(self.rooms), "since": self.since_ms, "media": self.media}


@dataclass(frozen=True)
class Repair:
    """What --repair did: action -> count, and the problems it could not fix."""

    done: dict[str, int] = field(default_factory=dict)
    unrepairable: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Outcome:
    mode: str
    scope: Scope
    rooms: tuple[RoomReport, ...]
    media: MediaReport | None = None
    repair: Repair | None = None

    @property
    def problems(self) -> list[Problem]:
        found = [p for room in self.rooms for p in room.problems]
        return found + list(self.media.problems if self.media else ())

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    @property
    def exit_code(self) -> int:
        return decide_exit(self.counts(), self.media.pending if self.media else 0, self.repair)


def decide_exit(counts: dict[str, int], media_pending: int, repair: Repair | None) -> int:
    """0 complete; 4 differences (or, with --repair, some it could not fix);
    5 nothing left to fix, but not settled: repairs queued or media still uploading."""
    found = sum(counts.values())
    if repair is not None and found:
        return ExitCode.VERIFY_MISMATCH if repair.unrepairable else ExitCode.VERIFY_UNSETTLED
    if found:
        return ExitCode.VERIFY_MISMATCH
    if media_pending:
        return ExitCode.VERIFY_UNSETTLED
    return ExitCode.OK


def sort_key(problem: Problem) -> tuple[str, str, str]:
    return (problem.room_id, problem.kind, problem.event_id or "")


def parse_since(text: str, now: float) -> int:
    """--since: a date (2024-05-01, UTC), a time (2024-05-01T12:00:00+02:00) or an age
    (7d, 12h) before `now` (epoch seconds); milliseconds since the epoch, as origin_server_ts."""
    value = text.strip()
    try:
        return int((now - parse_duration(value)) * 1000)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: expected a date (2024-05-01), a time (2024-05-01T12:00:00Z)"
                         " or an age (7d, 12h)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
