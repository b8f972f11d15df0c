"""The bot's own membership: kicks, bans, leaves, invites, and the holes they leave (pure).

A bot that is out of a room is sent nothing from it, so each kick, ban or leave
opens a **hole**: from the last event it saw (the kick itself, the last event
delivered before losing the room) to the first event after it is back (its own
join). The archive records the hole with these bounds so status and verify can
name what is missing until it is filled, by paging back from the live end to the
hole's start (paging.hole_job):
- with the bot's own /messages, once it is joined again, if the room's history
  visibility was `shared` or `world_readable` during the hole: the spec makes
  all such history visible to current members, and Synapse does so [ran];
- otherwise (`joined`, `invited`) only through Synapse's admin /messages API,
  which ignores visibility, or never (the hole is reported as unfillable).

mautrix bridges kick Matrix users that are not in the remote chat, reason "User
is not in remote chat" (bot-mode-facts §4); the reason is kept for the warning.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

LOSES_ACCESS = frozenset({"leave", "ban"})
# A leave from these was never access: an invite withdrawn or declined, a knock refused.
NO_ACCESS_BEFORE = frozenset({"invite", "knock", "leave", "ban"})


@dataclass(frozen=True)
class MembershipChange:
    room_id: str
    membership: str             # join, leave, ban, invite, knock
    previous: str | None        # unsigned.prev_content.membership, when the server gave it
    sender: str | None
    reason: str | None
    event_id: str | None        # None when the room is under rooms.leave with no such event shown
    origin_server_ts: int | None
    bot_user_id: str

    @property
    def kind(self) -> str:
        """joined, rejoined, invited, kicked, banned, left, declined (an invite or knock ended)."""
        if self.membership == "join":
            return "rejoined" if self.previous in LOSES_ACCESS else "joined"
        if self.membership == "ban":
            return "banned"
        if self.membership == "leave":
            if self.previous in ("invite", "knock"):
                return "declined"
            return "left" if self.sender == self.bot_user_id else "kicked"
        return "invited" if self.membership == "invite" else self.membership

    @property
    def loses_access(self) -> bool:
        return self.membership in LOSES_ACCESS and self.previous not in NO_ACCESS_BEFORE

    @property
    def gains_access(self) -> bool:
        return self.membership == "join" and self.previous != "join"


@dataclass(frozen=True)
class Invite:
    room_id: str
    inviter: str | None
    reason: str | None
    room_name: str | None
    is_direct: bool


def own_membership_changes(room_id: str, state: Iterable[Any], timeline: Iterable[Any],
                           bot_user_id: str, *, left: bool = False) -> list[MembershipChange]:
    """The bot's membership changes in one room of a sync, in order.

    The state block is the state *before* the timeline: after a rejoin it holds
    the bot's old join while the timeline repeats the kick. So the timeline's own
    m.room.member events are the changes, and the state block's count only when
    the timeline has none (the timeline began after the change). For a room under
    rooms.leave that shows no such event, a change without an event id still
    reports that access was lost.
    """
    changes = ([_change(room_id, e, bot_user_id) for e in timeline if _is_own_member(e, bot_user_id)]
               or [_change(room_id, e, bot_user_id) for e in state if _is_own_member(e, bot_user_id)])
    if left and not any(c.membership in LOSES_ACCESS for c in changes):
        changes.append(MembershipChange(room_id, "leave", None, None, None, None, None, bot_user_id))
    return changes


def _is_own_member(event: Any, bot_user_id: str) -> bool:
    return (isinstance(event, dict) and event.get("type") == "m.room.member"
            and event.get("state_key") == bot_user_id)


def _change(room_id: str, event: dict[str, Any], bot_user_id: str) -> MembershipChange:
    content = _dict(event.get("content"))
    unsigned = _dict(event.get("unsigned"))
    previous = _dict(unsigned.get("prev_content")).get("membership")
    return MembershipChange(
        room_id=room_id, membership=_str(content.get("membership")) or "unknown",
        previous=_str(previous), sender=_str(event.get("sender")),
        reason=_str(content.get("reason")), event_id=_str(event.get("event_id")),
        origin_server_ts=_int(event.get("origin_server_ts")), bot_user_id=bot_user_id)


def invite_of(room_id: str, body: Any, bot_user_id: str) -> Invite:
    """Who invited the bot to `room_id`, from the invite's stripped state."""
    state = _dict(_dict(body).get("invite_state")).get("events")
    events = [e for e in state if isinstance(e, dict)] if isinstance(state, list) else []
    own = next((e for e in events if _is_own_member(e, bot_user_id)), {})
    content = _dict(own.get("content"))
    name = next((_dict(e.get("content")).get("name") for e in events
                 if e.get("type") == "m.room.name" and e.get("state_key") == ""), None)
    return Invite(room_id, _str(own.get("sender")), _str(content.get("reason")), _str(name),
                  content.get("is_direct") is True)


# Holes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Hole:
    """Events in `room_id` the bot could not see: after `after_event_id`, before `before_event_id`."""

    room_id: str
    kind: str                      # kicked, banned, left
    by: str | None
    reason: str | None
    after_event_id: str | None     # the kick/ban/leave event: the last one seen
    after_ts: int | None
    before_event_id: str | None = None   # the bot's join when it is back; None while out
    before_ts: int | None = None

    @property
    def is_open(self) -> bool:
        return self.before_event_id is None


# Visibilities under which a current member sees what was sent while it was out.
MEMBER_SEES_PAST = frozenset({"shared", "world_readable"})


def fillable_by_member(visibility_during_hole: str | None) -> bool:
    """Whether the bot's own /messages, after rejoining, shows what it missed.

    `visibility_during_hole` is the m.room.history_visibility in force when the
    hole opened (None: never set, which the spec reads as `shared`). A change of
    visibility while out is visible in the pages themselves (paging.Page.restricted_by).
    """
    return (visibility_during_hole or "shared") in MEMBER_SEES_PAST


def open_hole(change: MembershipChange) -> Hole:
    return Hole(change.room_id, change.kind, change.sender, change.reason,
                change.event_id, change.origin_server_ts)


def close_hole(hole: Hole, rejoin: MembershipChange) -> Hole:
    return replace(hole, before_event_id=rejoin.event_id, before_ts=rejoin.origin_server_ts)


@dataclass(frozen=True)
class HoleUpdate:
    opened: tuple[Hole, ...]         # holes that are new (still open or closed in the same batch)
    closed: tuple[Hole, ...]         # holes that now have both bounds
    open_now: Mapping[str, Hole]     # room id -> the room's open hole after these changes


def track_holes(open_holes: Mapping[str, Hole], changes: Iterable[MembershipChange]) -> HoleUpdate:
    """Fold the bot's membership changes (in order) into the rooms' holes.

    A sync may show the event that opened a hole again (a rejoined room's timeline
    reaches back over the kick); what came before it is older than the hole.
    """
    current = dict(open_holes)
    opened: list[Hole] = []
    closed: list[Hole] = []
    for change in _after_known_starts(current, list(changes)):
        hole = current.get(change.room_id)
        if change.loses_access and hole is None:
            current[change.room_id] = new = open_hole(change)
            opened.append(new)
        elif change.gains_access and hole is not None:
            closed.append(close_hole(hole, change))
            del current[change.room_id]
    return HoleUpdate(tuple(opened), tuple(closed), current)


def _after_known_starts(holes: Mapping[str, Hole], changes: list[MembershipChange]
                        ) -> list[MembershipChange]:
    """`changes` without, per room, everything up to and including its open hole's start event."""
    cut: dict[str, int] = {}
    for index, change in enumerate(changes):
        hole = holes.get(change.room_id)
        if hole is not None and hole.after_event_id and change.event_id == hole.after_event_id:
            cut[change.room_id] = index
    return [c for i, c in enumerate(changes) if i > cut.get(c.room_id, -1)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
