"""Who leads: the lease keeper's decisions and the supervisor's reading of them (pure).

With daemon.ha on, every daemon runs a lease keeper (workers/lease_keeper.py);
the lease itself is a row in the archive (archive/leadership.py). Nothing here
touches a database, a process or the real clock, so every rule is unit-tested
with a fake clock.

The keeper's view of its lease is local and conservative: a lease granted by a
statement sent at monotonic time t is trusted until t + duration, because the
database set its expiry from its own now(), which came after t. So a keeper
never believes in a lease the database already considers expired (clock rates
being equal); the fencing token in every batch covers whatever this misses (a
process frozen between the check and its write).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace


class Act(enum.Enum):
    ACQUIRE = "acquire"  # take the lease if it is free, expired, or ours already (new token)
    RENEW = "renew"      # extend the lease we hold


@dataclass(frozen=True)
class Fence:
    """What a batch transaction checks (archive/leadership.py check_fence): the token the
    pipeline was started under, and how long a batch may sit idle in its transaction.
    Here, not in the gateway, so that the supervisor and every stage process can hold one
    without importing the database driver."""

    token: int
    idle_timeout: float


@dataclass(frozen=True)
class Timing:
    duration: float        # how long a granted lease runs (daemon.ha.lease_duration)
    renew_interval: float  # how often the leader renews, and a standby looks (daemon.ha.renew_interval)

    @property
    def retry_interval(self) -> float:
        """After a failed statement: sooner than a normal round, so that a short
        outage costs the leader its lease only when it lasts most of the lease."""
        return min(self.renew_interval, max(0.2, self.duration / 10))


@dataclass(frozen=True)
class Standing:
    """What the keeper knows of its lease."""

    token: int | None = None      # our fencing token while we hold (or last held) the lease
    valid_until: float = -math.inf  # monotonic: trust the lease until then
    since: float | None = None    # monotonic: when this token was granted
    next_round: float = 0.0       # monotonic: when to talk to the database again

    def leading(self, now: float) -> bool:
        return self.token is not None and now < self.valid_until


def next_act(standing: Standing, now: float) -> Act:
    """Renew a lease we still trust; otherwise (never held, lost, or run out) take it anew."""
    return Act.RENEW if standing.leading(now) else Act.ACQUIRE


def after_acquire(standing: Standing, token: int | None, sent_at: float, timing: Timing) -> Standing:
    """`token`: what ACQUIRE returned (None: another daemon holds the lease)."""
    if token is None:
        return Standing(next_round=sent_at + timing.renew_interval)
    return Standing(token, sent_at + timing.duration, sent_at, sent_at + timing.renew_interval)


def after_renew(standing: Standing, renewed: bool, sent_at: float, timing: Timing) -> Standing:
    """A refused renewal means another daemon took over (or the lease ran out): step down now."""
    if not renewed:
        return Standing(next_round=sent_at)  # try to take it at once: it may be free
    return replace(standing, valid_until=sent_at + timing.duration, next_round=sent_at + timing.renew_interval)


def after_error(standing: Standing, now: float, timing: Timing) -> Standing:
    """The database did not answer: keep what we know; the lease runs out by the clock."""
    return replace(standing, next_round=now + timing.retry_interval)


def round_delay(standing: Standing, now: float) -> float:
    """Seconds until the next round; also wakes when our lease runs out, to report it."""
    wake = standing.next_round
    if standing.leading(now):
        wake = min(wake, standing.valid_until)
    return max(0.0, wake - now)


# -- the supervisor's side ------------------------------------------------------
# The keeper publishes (valid_until, token) in its heartbeat slot; the supervisor
# compares valid_until with its own monotonic clock (system-wide on Linux), so a
# keeper that hangs in a network call stops counting as leader on time.


def leading_token(valid_until: float, token: float, now: float) -> int | None:
    """The fencing token the pipeline may run under now, or None (standby)."""
    if token <= 0 or now >= valid_until:
        return None
    return int(token)


class PipelineGate:
    """Whether the pipeline may run, and under which token (the Fleet holds one).

    Without HA (enabled False) it always may. With HA: only while leading, under
    the token it was started with; a new token (lost and taken again) or none
    stops it. A token a fenced stage reported is never used again, even before
    the keeper itself has noticed the takeover.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.token: int | None = None           # what the keeper says we lead under now
        self.running_token: int | None = None   # what the pipeline was started under
        self.refused: int | None = None

    @property
    def usable(self) -> int | None:
        return self.token if self.token != self.refused else None

    def may_start(self) -> bool:
        return not self.enabled or self.usable is not None

    def started(self) -> None:
        self.running_token = self.usable

    def update(self, token: int | None) -> bool:
        """A new reading of the keeper's slot; True if the running pipeline must stop."""
        self.token = token
        return self._must_stop()

    def refuse(self) -> bool:
        """A pipeline stage was fenced off; True if the running pipeline must stop."""
        self.refused = self.running_token
        return self._must_stop()

    def _must_stop(self) -> bool:
        if not self.enabled or self.running_token is None or self.running_token == self.usable:
            return False
        self.running_token = None
        return True
