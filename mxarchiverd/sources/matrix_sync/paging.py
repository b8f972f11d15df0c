"""Paging /messages (client or Synapse admin API) until a stop point (decisions pure).

When a page is the last is the whole difficulty, and the spec is plain about it:
only a missing `end` ends the pagination; "an empty chunk does not necessarily
imply that no more events are available" (Synapse returns empty pages with an
`end` when every event of a stretch is hidden, e.g. while the bot was kicked).
The other stops are ours: the job's `to` token (the server stops there and then
omits `end`), or an event the archive already holds (a gap's or hole's start).

History to creation is complete only if m.room.create was reached: a missing
`end` also means "no permission to see further" (spec), so otherwise the oldest
event reached is reported as the room's lower bound. Reaching creation is not
enough either when a `joined` or `invited` history visibility was passed: the
server still shows the creation state (sent under the default `shared`) but
hides what was sent under the restriction before the bot's membership, with no
sign in the pages. Such history is reported as not known to be complete.

Every page says where to resume (`resume_from`), so the caller commits that token
with the page's rows and a restart continues from it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_PAGE_LIMIT = 500
# Synapse caps /messages at 1000 (streams/config.py MAX_LIMIT).
MAX_PAGE_LIMIT = 1000

# Why a job ended.
END = "end"                 # the server gave no `end`: nothing more to see from here
STOP_EVENT = "stop_event"   # reached an event the archive already holds
STALLED = "stalled"         # the server returned the token it was given with nothing in it
# Visibilities under which a later member does not see what was sent before it joined.
RESTRICTED_VISIBILITY = frozenset({"joined", "invited"})


class PagingError(ValueError):
    """A /messages answer that is not an object; the caller retries or reports the room."""


@dataclass(frozen=True)
class PageJob:
    """Where to page and where to stop. `from_token` None starts at the live end."""

    room_id: str
    from_token: str | None
    to_token: str | None = None
    stop_event_ids: frozenset[str] = field(default_factory=frozenset)
    direction: str = "b"
    limit: int = DEFAULT_PAGE_LIMIT
    create_seen: bool = False       # m.room.create already reached (by an earlier run of this job)
    restricted_by: str | None = None  # a joined/invited history_visibility event already passed
    lowest_event_id: str | None = None
    lowest_ts: int | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("b", "f"):
            raise ValueError(f"direction: expected 'b' or 'f', got {self.direction!r}")
        if not 1 <= self.limit <= MAX_PAGE_LIMIT:
            raise ValueError(f"limit: expected 1 to {MAX_PAGE_LIMIT}, got {self.limit}")


@dataclass(frozen=True)
class Page:
    """One page. `events` are in server order (newest first when paging back)."""

    room_id: str
    events: tuple[Any, ...]
    state: tuple[Any, ...]            # lazy-loaded members for the page's senders
    resume_from: str | None           # commit with the rows; None once done
    done: bool
    reason: str | None                # END, STOP_EVENT, STALLED once done
    create_seen: bool                 # m.room.create reached in this job so far
    restricted_by: str | None         # a joined/invited history_visibility event passed so far
    lowest_event_id: str | None       # the oldest event reached so far (dir=b)
    lowest_ts: int | None
    next_job: PageJob | None          # the job to continue with, None once done

    @property
    def complete(self) -> bool:
        """History reached creation with nothing hidden on the way (for a job paging back to creation)."""
        return self.done and self.create_seen and self.restricted_by is None


Fetch = Callable[[PageJob], Any]


def read_page(job: PageJob, response: Any) -> Page:
    """What one /messages answer means for `job` (pure)."""
    if not isinstance(response, dict):
        raise PagingError(f"{job.room_id}: /messages answer is {type(response).__name__}, not an object")
    chunk = response.get("chunk")
    chunk = chunk if isinstance(chunk, list) else []
    events, hit_stop = _until_stop(chunk, job.stop_event_ids)
    end = response.get("end")
    end = end if isinstance(end, str) and end else None
    reason = _reason(job, end, hit_stop, chunk)
    create_seen = job.create_seen or any(_is_create(e) for e in events)
    restricted_by = job.restricted_by or _restricting_visibility(events)
    lowest_id, lowest_ts = _lowest(job, events)
    next_job = None if reason else replace(
        job, from_token=end, create_seen=create_seen, restricted_by=restricted_by,
        lowest_event_id=lowest_id, lowest_ts=lowest_ts)
    state = response.get("state")
    return Page(
        room_id=job.room_id, events=tuple(events),
        state=tuple(state) if isinstance(state, list) else (),
        resume_from=None if reason else end, done=reason is not None, reason=reason,
        create_seen=create_seen, restricted_by=restricted_by, lowest_event_id=lowest_id,
        lowest_ts=lowest_ts, next_job=next_job)


def _reason(job: PageJob, end: str | None, hit_stop: bool, chunk: list[Any]) -> str | None:
    if hit_stop:
        return STOP_EVENT
    if end is None:
        return END
    if end == job.from_token and not chunk:
        return STALLED
    return None


def _until_stop(chunk: list[Any], stop_ids: frozenset[str]) -> tuple[list[Any], bool]:
    """The chunk up to (not including) the first event the archive already holds."""
    if not stop_ids:
        return list(chunk), False
    for index, event in enumerate(chunk):
        if isinstance(event, dict) and event.get("event_id") in stop_ids:
            return list(chunk[:index]), True
    return list(chunk), False


def _is_create(event: Any) -> bool:
    return isinstance(event, dict) and event.get("type") == "m.room.create" and event.get("state_key") == ""


def _restricting_visibility(events: list[Any]) -> str | None:
    for event in events:
        if (isinstance(event, dict) and event.get("type") == "m.room.history_visibility"
                and event.get("state_key") == ""
                and isinstance(event.get("content"), dict)
                and event["content"].get("history_visibility") in RESTRICTED_VISIBILITY):
            event_id = event.get("event_id")
            return event_id if isinstance(event_id, str) else "unknown"
    return None


def _lowest(job: PageJob, events: list[Any]) -> tuple[str | None, int | None]:
    """The furthest event reached in the paging direction: the last keyed one of the page."""
    for event in reversed(events):
        if isinstance(event, dict) and isinstance(event.get("event_id"), str):
            ts = event.get("origin_server_ts")
            return event["event_id"], ts if isinstance(ts, int) and not isinstance(ts, bool) else None
    return job.lowest_event_id, job.lowest_ts


def pages(fetch: Fetch, job: PageJob) -> Iterator[Page]:
    """Page until done. `fetch(job)` returns the raw /messages answer for `job.from_token`.

    An exception from `fetch` (rate limit, outage) ends the iteration; continue
    later with the last page's `next_job` (or the job rebuilt from `resume_from`).
    """
    current: PageJob | None = job
    while current is not None:
        page = read_page(current, fetch(current))
        yield page
        current = page.next_job


def gap_job(room_id: str, prev_batch: str, since: str, stop_event_ids: frozenset[str] = frozenset(),
            limit: int = DEFAULT_PAGE_LIMIT) -> PageJob:
    """Close a limited timeline's gap: back from prev_batch to the previous since."""
    return PageJob(room_id, prev_batch, to_token=since, stop_event_ids=stop_event_ids, limit=limit)


def history_job(room_id: str, from_token: str | None, limit: int = DEFAULT_PAGE_LIMIT) -> PageJob:
    """Back to m.room.create (or as far as the account may see)."""
    return PageJob(room_id, from_token, limit=limit)


def hole_job(room_id: str, start_event_id: str, from_token: str | None = None,
             limit: int = DEFAULT_PAGE_LIMIT) -> PageJob:
    """Fill a hole through the admin API: back from `from_token` (or now) to the event that opened it."""
    return PageJob(room_id, from_token, stop_event_ids=frozenset({start_event_id}), limit=limit)
