"""One child's state machine and the restart policy: pure, driven by clock values.

States follow supervisord's (STARTING, RUNNING, BACKOFF, STOPPING, FATAL);
the backoff is capped exponential with jitter instead of supervisord's linear
1, 2, 3 s, and the give-up rule is Erlang's restart intensity (billiard's
maxR in maxT): past it the supervisor exits and systemd restarts the unit.
Nothing here touches a process, a signal or the real clock.
"""
from __future__ import annotations

import enum
import math
import signal
from collections import deque
from dataclasses import dataclass

from mxarchiverd.config import DaemonConfig
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.pipeline.heartbeat import Pulse


class ChildState(enum.Enum):
    STOPPED = "stopped"    # not started yet
    STARTING = "starting"  # process started; stage.open() has not reported ready
    RUNNING = "running"    # reported ready
    BACKOFF = "backoff"    # process gone; starts again at restart_at
    STOPPING = "stopping"  # asked to stop (control message or signal); waiting for its exit
    EXITED = "exited"      # gone during shutdown; final
    FATAL = "fatal"        # failed to boot in a way that a restart cannot fix; final


S = ChildState
# States in which a process exists and must be reaped before anything else happens.
HAS_PROCESS = frozenset({S.STARTING, S.RUNNING, S.STOPPING})

# Every legal transition. A STARTING or RUNNING child always passes through
# STOPPING during a shutdown, so only STOPPING (and never-started states) lead to EXITED.
_LEGAL: dict[ChildState, frozenset[ChildState]] = {
    S.STOPPED: frozenset({S.STARTING, S.EXITED}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.BACKOFF, S.FATAL}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF}),
    S.BACKOFF: frozenset({S.STARTING, S.EXITED}),
    S.STOPPING: frozenset({S.BACKOFF, S.EXITED}),
    S.EXITED: frozenset(),
    S.FATAL: frozenset(),
}

# Exit codes of a child that failed in stage.open() and will fail again the same way.
_BOOT_FATAL = frozenset({ExitCode.CONFIG, ExitCode.SCHEMA_MISMATCH})


class IllegalTransition(RuntimeError):
    """A bug in the supervisor: it tried a state change the machine does not allow."""


class Escalation(enum.IntEnum):
    ASKED = 0       # a stop control message, or waiting for the end-of-stream marker
    TERMINATED = 1  # SIGTERM sent
    KILLED = 2      # SIGKILL sent


@dataclass
class Child:
    role: str
    state: ChildState = S.STOPPED
    since: float = 0.0
    started_at: float = 0.0
    ready_at: float | None = None
    # Consecutive failures without a stable run in between; drives the backoff.
    attempt: int = 0
    restart_at: float = 0.0
    # STOPPING: when to escalate to the next signal.
    deadline: float = math.inf
    escalation: Escalation = Escalation.ASKED
    # For the watchdog: when the child stopped being RUNNING with a fresh heartbeat.
    unhealthy_since: float | None = None
    last_exit: int | None = None
    # The progress counter last seen, and since when it has not moved while the
    # child held work (see is_stalled).
    progress_seen: int = 0
    progress_since: float = 0.0

    def change(self, new: ChildState, now: float) -> None:
        if new not in _LEGAL[self.state]:
            raise IllegalTransition(f"{self.role}: {self.state.value} -> {new.value}")
        self.state, self.since = new, now

    @property
    def has_process(self) -> bool:
        return self.state in HAS_PROCESS


@dataclass(frozen=True)
class Policy:
    heartbeat_timeout: float
    startup_timeout: float
    stop_timeout: float
    kill_grace: float
    backoff_initial: float
    backoff_max: float
    restart_limit: int
    restart_window: float

    @classmethod
    def from_config(cls, daemon: DaemonConfig) -> Policy:
        return cls(
            heartbeat_timeout=daemon.heartbeat_timeout,
            startup_timeout=daemon.startup_timeout,
            stop_timeout=daemon.stop_timeout,
            # SIGTERM -> SIGKILL grace for one child; a stuck child rarely recovers,
            # so a few seconds suffice, and never more than the whole drain.
            kill_grace=min(5.0, daemon.stop_timeout),
            backoff_initial=daemon.restart_backoff_initial,
            backoff_max=daemon.restart_backoff_max,
            restart_limit=daemon.restart_limit,
            restart_window=daemon.restart_window,
        )

    @property
    def unhealthy_budget(self) -> float:
        """How long a child may stay unhealthy before the watchdog ping stops.

        One full recovery cycle: notice the silence, TERM and KILL, back off,
        boot again. A child still unhealthy after that is not recovering by itself.
        """
        return self.heartbeat_timeout + self.kill_grace + self.backoff_max + self.startup_timeout


def backoff_delay(attempt: int, initial: float, maximum: float, jitter: float) -> float:
    """Seconds to wait before restart number `attempt` (1-based); jitter is in [0, 1).

    "Equal jitter": half the capped exponential step is fixed, half random, so
    children that failed together (a pipeline) do not retry in lockstep forever.
    """
    step = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    return step / 2 + step / 2 * jitter


def next_attempt(child: Child, now: float, policy: Policy) -> int:
    """A run that stayed ready for at least the longest backoff counts as stable."""
    stable = child.ready_at is not None and now - child.ready_at >= policy.backoff_max
    return 1 if stable else child.attempt + 1


def is_stuck(child: Child, last_beat: float, now: float, policy: Policy) -> bool:
    """Silent past its allowance: heartbeat_timeout while running; during boot,
    stage.open() may also wait startup_timeout for a database. "Never beat" is
    measured from the spawn, so a child that hangs before its first beat is caught too."""
    since = max(last_beat, child.started_at)
    if child.state is S.RUNNING:
        return now - since > policy.heartbeat_timeout
    if child.state is S.STARTING:
        return now - since > policy.startup_timeout + policy.heartbeat_timeout
    return False


def note_progress(child: Child, pulse: Pulse, now: float) -> None:
    """Restart the no-progress clock whenever the counter moves or the child holds no work."""
    if pulse.progress != child.progress_seen or not pulse.holding:
        child.progress_seen, child.progress_since = pulse.progress, now


def is_stalled(child: Child, pulse: Pulse, now: float, policy: Policy) -> bool:
    """Beating but getting nowhere: a running child that has held work for
    heartbeat_timeout without its progress counter moving (a transaction retried
    forever, a transfer that never ends) is as stuck as a silent one.
    Call note_progress first."""
    return (child.state is S.RUNNING and pulse.holding
            and now - max(child.progress_since, child.since) > policy.heartbeat_timeout)


def boot_exit_code(exitcode: int, state: ChildState, ever_ready: bool) -> int | None:
    """The code the supervisor itself exits with when a child failed to boot, else None.

    A bad config or schema stays bad: stop now and let RestartPreventExitStatus=
    keep systemd from looping. A database unreachable at the very first start
    (the child already waited startup_timeout) is reported as UNAVAILABLE; later
    it is an ordinary failure, retried with backoff.
    """
    if state is not S.STARTING:
        return None
    if exitcode in _BOOT_FATAL:
        return exitcode
    if exitcode == ExitCode.UNAVAILABLE and not ever_ready:
        return exitcode
    return None


def describe_exit(exitcode: int) -> str:
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    hint = " (out of memory?)" if exitcode == -signal.SIGKILL else ""
    return f"was killed by {name}{hint}"


class RestartIntensity:
    """More than `limit` restarts within `window` seconds means: give up."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Count one restart; True while still within the limit."""
        self._times.append(now)
        return self.count(now) <= self.limit

    def count(self, now: float) -> int:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times)
