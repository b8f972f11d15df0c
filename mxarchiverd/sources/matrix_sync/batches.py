"""What one /sync or one /messages page becomes for the pipeline (pure).

A sync becomes ONE EventBatch whose SyncCursor carries everything the sync
taught (token, rooms with events, pagination jobs, holes, memberships): the
dbwriter commits all of it with the events or none of it, so a crash anywhere
means the same /sync is made again from the committed token (DESIGN.md
invariant 8). A page becomes one EventBatch with a PageCursor.

The follower keeps a Coverage (what is committed or on its way to be) and
these functions return the next one, so the decisions are testable without a
homeserver.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mxarchiverd.pipeline.cursors import HoleBounds, Membership, PageCursor, Pagination, SyncCursor
from mxarchiverd.pipeline.messages import EventBatch, RawEvent
from mxarchiverd.sources.matrix_sync.events import EventProblem, normalise_all
from mxarchiverd.sources.matrix_sync.membership import Hole, HoleUpdate, MembershipChange, track_holes
from mxarchiverd.sources.matrix_sync.paging import END, STOP_EVENT, Page, PageJob
from mxarchiverd.sources.matrix_sync.plan import RoomPlan, SyncPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveJob:
    """A pagination job being worked: its durable record and where the pager stands."""

    record: Pagination
    pager: PageJob


@dataclass(frozen=True)
class Coverage:
    """What the follower knows of its own progress (committed, or in the queue)."""

    account: str
    since: str | None = None
    joined: frozenset[str] = frozenset()          # rooms the bot is in
    # Rooms the archive has followed before: a rejoined room is not new (its
    # missed stretch is a hole, not a history to read again).
    known: frozenset[str] = frozenset()
    holes: dict[str, Hole] = field(default_factory=dict)   # open holes by room
    jobs: tuple[ActiveJob, ...] = ()              # pending pagination jobs, oldest first


@dataclass(frozen=True)
class Rules:
    """The decisions a sync needs from config and homeserver."""

    selected: Callable[[str], bool]            # is the room archived
    backfill: Callable[[str], bool]            # is its earlier history wanted
    room_version: Callable[[str, RoomPlan], str | None]
    # Would the bot's own /messages show what it missed in this room (history visibility)?
    member_can_fill: Callable[[str], bool]
    admin: bool                                 # the admin API reads what the bot cannot
    new_id: Callable[[], str]
    page_limit: int = 500


@dataclass(frozen=True)
class SyncOutcome:
    batch: EventBatch
    coverage: Coverage
    problems: tuple[EventProblem, ...]
    kicks: tuple[MembershipChange, ...]        # losses of access, for the warning


def from_sync(plan: SyncPlan, coverage: Coverage, rules: Rules) -> SyncOutcome:
    rooms = [room for room in plan.rooms if rules.selected(room.room_id)]
    events: list[RawEvent] = []
    context: list[RawEvent] = []
    problems: list[EventProblem] = []
    jobs: list[ActiveJob] = []
    for room in rooms:
        version = rules.room_version(room.room_id, room)
        good, bad = normalise_all(room.timeline, room.room_id, version)
        events += good
        problems += bad
        context += normalise_all(room.state, room.room_id, version)[0]
        jobs += _jobs_of(room, rules)
    changes = [change for room in rooms for change in room.memberships]
    holes = track_holes(coverage.holes, changes)
    jobs += [_hole_job(hole, rules) for hole in holes.closed if _fillable(hole, rules)]
    cursor = SyncCursor(
        account=coverage.account, token=plan.next_batch,
        rooms=tuple(sorted({room.room_id for room in rooms if room.timeline})),
        jobs=tuple(job.record for job in jobs),
        holes=_hole_bounds(holes, rules),
        memberships=_memberships(rooms))
    joined = _joined_after(coverage.joined, rooms)
    next_coverage = replace(coverage, since=plan.next_batch, joined=joined, known=coverage.known | joined,
                            holes=dict(holes.open_now), jobs=coverage.jobs + tuple(jobs))
    # Warned once per hole: a later sync may show the same kick again (a re-invite).
    opened = {(hole.room_id, hole.after_event_id) for hole in holes.opened}
    kicks = tuple(change for change in changes
                  if change.loses_access and (change.room_id, change.event_id) in opened)
    return SyncOutcome(EventBatch(cursor, events, context), next_coverage, tuple(problems), kicks)


def _jobs_of(room: RoomPlan, rules: Rules) -> list[ActiveJob]:
    if room.history is not None:
        record = Pagination(rules.new_id(), room.room_id, "history", room.history.from_token)
        return [ActiveJob(record, PageJob(room.room_id, room.history.from_token, limit=rules.page_limit))]
    if room.gap is not None:
        record = Pagination(rules.new_id(), room.room_id, "gap", room.gap.from_token, to_token=room.gap.to_token)
        pager = PageJob(room.room_id, room.gap.from_token, to_token=room.gap.to_token, limit=rules.page_limit)
        return [ActiveJob(record, pager)]
    return []


def _fillable(hole: Hole, rules: Rules) -> bool:
    return hole.after_event_id is not None and (rules.member_can_fill(hole.room_id) or rules.admin)


def _hole_job(hole: Hole, rules: Rules) -> ActiveJob:
    """Page back from the live end to the event that opened the hole."""
    assert hole.after_event_id is not None
    via_admin = not rules.member_can_fill(hole.room_id)
    stops = (hole.after_event_id,)
    record = Pagination(rules.new_id(), hole.room_id, "hole", None, stop_event_ids=stops,
                        via_admin_api=via_admin, hole_after_event_id=hole.after_event_id)
    return ActiveJob(record, PageJob(hole.room_id, None, stop_event_ids=frozenset(stops), limit=rules.page_limit))


def _hole_bounds(update: HoleUpdate, rules: Rules) -> tuple[HoleBounds, ...]:
    closed = {(h.room_id, h.after_event_id) for h in update.closed}
    found = [h for h in update.opened if (h.room_id, h.after_event_id) not in closed] + list(update.closed)
    return tuple(HoleBounds(h.room_id, h.kind, h.by, h.reason, h.after_event_id, h.after_ts,
                            h.before_event_id, h.before_ts,
                            state=None if h.is_open or _fillable(h, rules) else "unfillable")
                 for h in found)


def _memberships(rooms: list[RoomPlan]) -> tuple[Membership, ...]:
    """The bot's membership per room as of this sync: its last change, else what the section says."""
    found = []
    for room in rooms:
        last = room.memberships[-1] if room.memberships else None
        if last is not None:
            found.append(Membership(room.room_id, last.membership, last.reason, last.sender, last.origin_server_ts))
        elif room.section == "join":
            found.append(Membership(room.room_id, "join"))
    return tuple(found)


def _joined_after(joined: frozenset[str], rooms: list[RoomPlan]) -> frozenset[str]:
    now = set(joined)
    for room in rooms:
        if room.section == "join":
            now.add(room.room_id)
        else:
            now.discard(room.room_id)
    return frozenset(now)


# -- pages -------------------------------------------------------------------------

@dataclass(frozen=True)
class PageOutcome:
    batch: EventBatch
    job: ActiveJob | None            # the job to go on with (None once done)
    then: ActiveJob | None           # a job handed on (a hole the admin API must fill)
    problems: tuple[EventProblem, ...]


def from_page(job: ActiveJob, page: Page, room_version: str | None, rules: Rules) -> PageOutcome:
    good, bad = normalise_all(page.events, job.record.room_id, room_version)
    context = normalise_all(page.state, job.record.room_id, room_version)[0]
    then = _handed_on(job, page, rules) if page.done else None
    cursor = PageCursor(
        job_id=job.record.id, room_id=job.record.room_id, resume_token=page.resume_from, done=page.done,
        events_seen=len(good), outcome=page.reason, create_seen=page.create_seen,
        restricted_by=page.restricted_by, lowest_event_id=page.lowest_event_id, lowest_ts=page.lowest_ts,
        history_complete=page.complete if page.done and job.record.kind == "history" else None,
        hole_state=_hole_state(job, page, then) if page.done and job.record.kind == "hole" else None,
        then=then.record if then else None)
    going_on = ActiveJob(job.record, page.next_job) if page.next_job is not None else None
    return PageOutcome(EventBatch(cursor, good, context), going_on, then, tuple(bad))


def _hole_state(job: ActiveJob, page: Page, then: ActiveJob | None) -> str | None:
    """filled once the pages reached the hole's start with nothing hidden on the way."""
    if page.reason == STOP_EVENT and page.restricted_by is None:
        return "filled"
    return None if then is not None else "unfillable"


def _handed_on(job: ActiveJob, page: Page, rules: Rules) -> ActiveJob | None:
    """The bot could not see all of a hole: the admin API reads it, if the account is an admin."""
    record = job.record
    reached = page.reason == STOP_EVENT and page.restricted_by is None
    if record.kind != "hole" or reached or record.via_admin_api or not rules.admin:
        return None
    if page.reason not in (END, STOP_EVENT):
        return None
    admin = replace(record, id=rules.new_id(), from_token=None, via_admin_api=True)
    return ActiveJob(admin, replace(job.pager, from_token=None, restricted_by=None, create_seen=False,
                                    lowest_event_id=None, lowest_ts=None))
