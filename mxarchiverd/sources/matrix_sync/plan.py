"""From one /sync response, what to archive and what to do next (pure; raw JSON in, plan out).

Per room the events to archive are the state block then the timeline, each event
once (spec §2.1: de-duplicate by event id). Jobs say what /sync alone cannot give:

- GapJob: the timeline is `limited`, so events between the previous `since` and
  the timeline's `prev_batch` were left out; page /messages back from `prev_batch`
  to `since` (spec "To close the gap", bot-mode-facts §2.1, §7.3).
- HistoryJob: the room is new to the archive (first sync, or joined since) and
  backfill is wanted; page back to m.room.create. A history job also covers the
  gap, so a room never gets both.

The bot's own membership changes are reported in order: a leave whose sender is
not the bot is a kick (mautrix bridges kick with "User is not in remote chat"),
a ban is a ban, invites come from rooms.invite. The archive opens a hole at a
kick/ban/leave and closes it at the rejoin (membership.py).

The next cursor is `next_batch`; it is the caller's to commit with the rows.
"""
from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from typing import Any

from mxarchiverd.sources.matrix_sync.events import room_version_of
from mxarchiverd.sources.matrix_sync.membership import (
    Invite, MembershipChange, invite_of, own_membership_changes,
)


class MalformedSync(ValueError):
    """The response has no usable `next_batch`: it cannot advance the cursor."""


@dataclass(frozen=True)
class GapJob:
    room_id: str
    from_token: str   # the limited timeline's prev_batch
    to_token: str     # the `since` the sync was requested with


@dataclass(frozen=True)
class HistoryJob:
    room_id: str
    from_token: str              # prev_batch of the room's timeline in this sync


@dataclass(frozen=True)
class RoomPlan:
    room_id: str
    section: str                             # "join" or "leave"
    events: tuple[dict[str, Any], ...]       # client-format, state block then timeline
    limited: bool
    prev_batch: str | None
    gap: GapJob | None = None
    history: HistoryJob | None = None
    new: bool = False                        # not followed before this sync
    # m.room.create opens the timeline: this sync holds the room's whole history.
    history_complete: bool = False
    room_version: str | None = None          # from an m.room.create in this sync, if any
    memberships: tuple[MembershipChange, ...] = ()  # the bot's own, in order
    # The timeline alone: the events that happened in this stretch (the archive's rows).
    timeline: tuple[dict[str, Any], ...] = ()
    # The state block: the room's state before the timeline, context for names (its
    # events are archived when a timeline or a page reaches them).
    state: tuple[dict[str, Any], ...] = ()
    problems: tuple[str, ...] = ()           # room-level oddities (not per event)


@dataclass(frozen=True)
class SyncPlan:
    since: str | None
    next_batch: str
    rooms: tuple[RoomPlan, ...]                   # joined rooms, then left rooms
    memberships: tuple[MembershipChange, ...]     # the bot's own, in event order per room
    invites: tuple[Invite, ...]
    problems: tuple[str, ...] = ()

    @property
    def first_sync(self) -> bool:
        return self.since is None

    def room(self, room_id: str) -> RoomPlan | None:
        return next((r for r in self.rooms if r.room_id == room_id), None)


@dataclass(frozen=True)
class PlanInputs:
    """What the planner needs besides the response. `known_rooms` are the rooms the
    archive already follows; `backfill(room_id)` says whether history is wanted."""

    since: str | None
    bot_user_id: str
    known_rooms: Container[str] = field(default_factory=frozenset)
    backfill: Callable[[str], bool] = lambda room_id: False


def plan_sync(response: Any, inputs: PlanInputs) -> SyncPlan:
    """The plan for one /sync response (raw JSON as the server sent it)."""
    if not isinstance(response, dict):
        raise MalformedSync(f"/sync response is {type(response).__name__}, not an object")
    next_batch = response.get("next_batch")
    if not isinstance(next_batch, str) or not next_batch:
        raise MalformedSync("/sync response: next_batch missing or not a string")
    problems: list[str] = []
    rooms_obj = _section(response, "rooms", "", problems)
    rooms = [plan_room(room_id, body, section, inputs)
             for section in ("join", "leave")
             for room_id, body in _rooms(rooms_obj, section, problems)]
    memberships = [change for r in rooms for change in r.memberships]
    invites = [invite_of(room_id, body, inputs.bot_user_id)
               for room_id, body in _rooms(rooms_obj, "invite", problems)]
    return SyncPlan(inputs.since, next_batch, tuple(rooms), tuple(memberships), tuple(invites),
                    tuple(problems))


def plan_room(room_id: str, body: Any, section: str, inputs: PlanInputs) -> RoomPlan:
    problems: list[str] = []
    body = body if isinstance(body, dict) else {}
    state = _events(_section(body, "state", room_id, problems), room_id, "state", problems)
    timeline_obj = _section(body, "timeline", room_id, problems)
    timeline = _events(timeline_obj, room_id, "timeline", problems)
    events = tuple(dedupe(state + timeline))
    limited = timeline_obj.get("limited") is True
    prev_batch = _token(timeline_obj.get("prev_batch"))
    create = _create_event(events)
    complete = _create_event(tuple(timeline)) is not None
    new = inputs.since is None or room_id not in inputs.known_rooms
    gap, history = _jobs(room_id, section, new, limited, prev_batch, complete, inputs, problems)
    return RoomPlan(
        room_id=room_id, section=section, events=events, limited=limited, prev_batch=prev_batch,
        timeline=tuple(dedupe(timeline)), state=tuple(dedupe(state)),
        gap=gap, history=history, new=new, history_complete=complete,
        room_version=_room_version(create), problems=tuple(problems),
        memberships=tuple(own_membership_changes(room_id, state, timeline, inputs.bot_user_id,
                                                 left=section == "leave")))


def _jobs(room_id: str, section: str, new: bool, limited: bool, prev_batch: str | None,
          complete: bool, inputs: PlanInputs, problems: list[str]
          ) -> tuple[GapJob | None, HistoryJob | None]:
    if new and section == "join" and inputs.backfill(room_id):
        # The whole history is here, or the server has nothing earlier to page.
        if complete or prev_batch is None:
            return None, None
        return None, HistoryJob(room_id, prev_batch)
    if not limited or inputs.since is None:
        return None, None
    if prev_batch is None:
        problems.append(f"{room_id}: limited timeline without prev_batch; the gap cannot be paged")
        return None, None
    return GapJob(room_id, prev_batch, inputs.since), None


def dedupe(events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each event once, at its first appearance; events without an id pass (normalise reports them)."""
    seen: set[str] = set()
    for event in events:
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if isinstance(event_id, str):
            if event_id in seen:
                continue
            seen.add(event_id)
        yield event


def _create_event(events: tuple[Any, ...]) -> dict[str, Any] | None:
    for event in events:
        if isinstance(event, dict) and event.get("type") == "m.room.create" and event.get("state_key") == "":
            return event
    return None


def _room_version(create: dict[str, Any] | None) -> str | None:
    if create is None:
        return None
    return room_version_of(create.get("content"))


def _section(obj: dict[str, Any], key: str, where: str, problems: list[str]) -> dict[str, Any]:
    value = obj.get(key, {})
    if isinstance(value, dict):
        return value
    problems.append(f"{where or '/sync'}: {key} is {type(value).__name__}, not an object; ignored")
    return {}


def _rooms(rooms_obj: dict[str, Any], section: str, problems: list[str]) -> list[tuple[str, Any]]:
    value = _section(rooms_obj, section, "rooms", problems)
    return [(room_id, body) for room_id, body in value.items() if isinstance(room_id, str) and room_id]


def _events(block: dict[str, Any], room_id: str, name: str, problems: list[str]) -> list[Any]:
    events = block.get("events", [])
    if isinstance(events, list):
        return events
    problems.append(f"{room_id}: {name}.events is {type(events).__name__}, not a list; ignored")
    return []


def _token(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
