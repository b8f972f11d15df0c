"""Lock-free heartbeat slots in shared memory, one per child.

A RawArray of doubles: each child writes only its own slot, the supervisor only
reads (and zeroes a slot before it spawns the slot's next process). With no lock
there is no lock for a killed child to die holding; an aligned 8-byte store is
not torn on the platforms we run on, and a value one beat old is good enough.

The child's own main loop stamps the beat (not a helper thread), so a fresh
beat proves that the loop turns, not merely that the interpreter is alive.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

# The numbers a Stage.stats() may report, shown in STATUS= (see status.py):
#   archived       events written to the archive (dbwriter), cumulative
#   lag            stream positions between Synapse's commit-safe bound and the poller's
#                  forward cursor (poller); positions, not seconds: Synapse's stream has no clock
#   media_backlog  media jobs waiting (uploader)
#   errors         errors so far (any stage), cumulative
#   media_dead     dead-lettered media jobs in the archive (uploader); why they died is
#                  text, which a slot of doubles cannot carry: `mxarchiverd status` reads it
STAT_KEYS: tuple[str, ...] = ("archived", "lag", "media_backlog", "errors", "media_dead")
# The lease keeper's (daemon.ha; leadership.py): until when (CLOCK_MONOTONIC) it
# trusts the lease it holds (0: it holds none), and the lease's fencing token.
LEADERSHIP_KEYS: tuple[str, ...] = ("lease_until", "fence")

# beat: CLOCK_MONOTONIC seconds of the last beat, 0 = never (time.monotonic is
#   system-wide on Linux, so the supervisor can compare it with its own clock).
# progress: work done so far (messages handled or emitted, and the stage's own
#   proofs of progress during long work); only its changes matter.
# holding: 1 while the stage holds work it has not finished (a message taken from
#   its inbox, transfers under way). Holding work without progress is being stuck,
#   however fresh the beat (see supervisor/children.py is_stalled).
# ready: 1 once stage.open() succeeded;
# generation: the config generation the child runs with (acknowledges a reconfigure).
FIELDS: tuple[str, ...] = ("beat", "progress", "holding", "ready", "generation", *STAT_KEYS, *LEADERSHIP_KEYS)
_AT = {name: i for i, name in enumerate(FIELDS)}
WIDTH = len(FIELDS)


@dataclass(frozen=True)
class Pulse:
    """What the supervisor reads of one child at a time: is its loop turning, is it getting anywhere."""

    beat: float = 0.0
    progress: int = 0
    holding: bool = False


class HeartbeatSlot:
    """One child's view of its slot; picklable while a process is being spawned."""

    def __init__(self, array: Any, index: int) -> None:
        self._array = array
        self._base = index * WIDTH

    def _get(self, name: str) -> float:
        return float(self._array[self._base + _AT[name]])

    def _set(self, name: str, value: float) -> None:
        self._array[self._base + _AT[name]] = value

    # -- child side -----------------------------------------------------------

    def beat(self, now: float) -> None:
        self._set("beat", now)

    def add_progress(self, count: int) -> None:
        if count:
            self._set("progress", self._get("progress") + count)

    def set_holding(self, holding: bool) -> None:
        self._set("holding", 1.0 if holding else 0.0)

    def mark_ready(self) -> None:
        self._set("ready", 1.0)

    def set_generation(self, generation: int) -> None:
        self._set("generation", float(generation))

    def write_stats(self, stats: Mapping[str, float]) -> None:
        """Copy the known keys of Stage.stats(); others are ignored (not shown)."""
        for key in STAT_KEYS + LEADERSHIP_KEYS:
            value = stats.get(key)
            if isinstance(value, (int, float)):
                self._set(key, float(value))

    # -- supervisor side ------------------------------------------------------

    @property
    def last_beat(self) -> float:
        return self._get("beat")

    @property
    def pulse(self) -> Pulse:
        return Pulse(self._get("beat"), int(self._get("progress")), self._get("holding") >= 1.0)

    @property
    def ready(self) -> bool:
        return self._get("ready") >= 1.0

    @property
    def generation(self) -> int:
        return int(self._get("generation"))

    @property
    def progress(self) -> int:
        return int(self._get("progress"))

    def stats(self) -> dict[str, float]:
        return {key: self._get(key) for key in STAT_KEYS}

    @property
    def leadership(self) -> tuple[float, float]:
        """(lease_until, fence) as the lease keeper last wrote them."""
        return self._get("lease_until"), self._get("fence")

    def reset(self) -> None:
        """Forget the previous process's values; only while no process owns the slot."""
        for name in FIELDS:
            self._set(name, 0.0)


class HeartbeatBoard:
    """The supervisor's shared array: one slot per role, created before any child."""

    def __init__(self, ctx: BaseContext, roles: tuple[str, ...]) -> None:
        self.array = ctx.RawArray("d", max(1, len(roles)) * WIDTH)
        self.slots = {role: HeartbeatSlot(self.array, i) for i, role in enumerate(roles)}

    def slot(self, role: str) -> HeartbeatSlot:
        return self.slots[role]

    def beats(self) -> dict[str, float]:
        return {role: slot.last_beat for role, slot in self.slots.items()}

    def pulses(self) -> dict[str, Pulse]:
        return {role: slot.pulse for role, slot in self.slots.items()}

    def stats(self) -> dict[str, dict[str, float]]:
        return {role: slot.stats() for role, slot in self.slots.items()}
