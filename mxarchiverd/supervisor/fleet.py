"""Every child's state, and what the supervisor must do next: pure decisions.

The supervisor's process shell reports events (a child exited, reported ready,
the clock moved, SIGTERM, a reload) and executes the Orders that come back.
Nothing here forks, signals or sleeps, so the whole restart policy is
unit-tested with a fake clock (supervisord's `tick(now=)` seam).

Two rules shape it:
- The pipeline stages (poller -> enricher -> dbwriter) share queues. A queue
  that a dead process touched may hold a stale lock or half a message, so any
  pipeline stage's death restarts all of them, on fresh queues, from the
  durable cursor. A stage outside the pipeline (the uploader) restarts alone.
- Stopping is a drain, not a kill: the intake stages get a stop message, an
  end-of-stream marker flows down the pipeline, and signals come only after a
  deadline.
- With daemon.ha, the pipeline runs only while this daemon leads (PipelineGate,
  fed from the lease keeper's slot); a standby runs the other stages and counts
  as healthy. The lease keeper stops last, so that it hands the lease over only
  after the pipeline's final batch.
"""
from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.leadership import PipelineGate
from mxarchiverd.pipeline.heartbeat import Pulse
from mxarchiverd.supervisor.children import (
    Child, ChildState, Escalation, Policy, RestartIntensity, backoff_delay, boot_exit_code,
    describe_exit, is_stalled, is_stuck, next_attempt, note_progress,
)

log = logging.getLogger(__name__)
S = ChildState


class Verb(enum.Enum):
    REBUILD = "rebuild"  # make fresh pipeline queues (always right before the pipeline spawns)
    SPAWN = "spawn"
    STOP = "stop"        # control message: stop taking in work, drain, exit
    DUMP = "dump"        # SIGUSR1: the child's faulthandler prints where it is stuck
    TERM = "term"
    KILL = "kill"


@dataclass(frozen=True)
class Order:
    verb: Verb
    role: str = ""


Orders = list[Order]


class Fleet:
    def __init__(self, roles: Sequence[str], pipeline: Sequence[str], policy: Policy,
                 jitter: Callable[[], float], *, gated: bool = False, last: Sequence[str] = ()) -> None:
        self.children = {role: Child(role) for role in roles}
        self.pipeline = tuple(role for role in pipeline if role in self.children)
        self.policy = policy
        self.intensity = RestartIntensity(policy.restart_limit, policy.restart_window)
        self.jitter = jitter
        self.shutting_down = False
        self.exit_code: int | None = None
        # Every child was RUNNING at the same time at least once (READY=1 was due).
        self.ever_ready = False
        # The latest trouble, for STATUS=; cleared when every child is running again.
        self.problem: str | None = None
        # daemon.ha: the pipeline runs only while this daemon leads (set_leadership).
        self.gate = PipelineGate(gated)
        # Stopped only once the pipeline has no process left (the lease keeper).
        self.last = frozenset(role for role in last if role in self.children)
        self.stop_deadline = math.inf

    # -- events -------------------------------------------------------------

    def begin(self, now: float) -> Orders:
        return self._start_due(now)

    def ready(self, role: str, now: float) -> None:
        child = self.children[role]
        child.change(S.RUNNING, now)
        child.ready_at = now
        if self.all_running:
            self.ever_ready = True
            self.problem = None

    def exited(self, role: str, exitcode: int, now: float) -> Orders:
        child = self.children[role]
        child.last_exit = exitcode
        if self.shutting_down:
            child.change(S.EXITED, now)
            return self._release_orphans(now) + self._stop_last(now)
        if exitcode == ExitCode.FENCED and role in self.pipeline and self.gate.enabled:
            return self._fenced(child, now)
        if child.state is S.STOPPING:
            # We asked for this exit (reload, a pipeline peer failed, or it was stuck).
            child.change(S.BACKOFF, now)
            child.restart_at = max(child.restart_at, now)
            return self._release_orphans(now)
        return self._failed(child, exitcode, now)

    def tick(self, now: float, pulses: Mapping[str, Pulse]) -> Orders:
        orders: Orders = []
        for child in self.children.values():
            orders += self._check_stuck(child, pulses.get(child.role, Pulse()), now)
            orders += self._escalate(child, now)
        self._track_health(pulses, now)
        orders += self._release_orphans(now)
        if self.shutting_down:
            orders += self._stop_last(now)
        else:
            orders += self._start_due(now)
        return orders

    def set_leadership(self, token: int | None, now: float) -> Orders:
        """The fencing token this daemon leads under (None: standing by), as the
        lease keeper's slot says right now. Losing it stops the pipeline at once:
        its writes would be fenced off anyway."""
        if self.shutting_down or not self.gate.update(token):
            return []
        self._note("lost the leadership lease; standing by" if token is None
                   else "the leadership lease was taken again with a new token; restarting the pipeline")
        return self._stop_pipeline(now)

    def shutdown(self, now: float, code: int) -> Orders:
        """Begin the drain; the first reason to stop decides the exit code."""
        if self.shutting_down:
            return []
        self.shutting_down, self.exit_code = True, code
        deadline = self.stop_deadline = now + self.policy.stop_timeout
        orders: Orders = []
        for child in self.children.values():
            if child.role not in self.last:
                orders += self._stop_for_good(child, deadline, now)
        return orders + self._release_orphans(now) + self._stop_last(now)

    def hurry(self, now: float) -> None:
        """A second SIGTERM/SIGINT: skip the rest of the drain, escalate now."""
        for child in self.children.values():
            if child.state is S.STOPPING:
                child.deadline = min(child.deadline, now)

    def set_policy(self, policy: Policy) -> None:
        """Reloaded daemon.* timing; the restart history is kept."""
        self.policy = policy
        self.intensity.limit, self.intensity.window = policy.restart_limit, policy.restart_window

    def restart(self, roles: Iterable[str], now: float) -> Orders:
        """Restart roles for a reload, gracefully (drain, then start with the new config)."""
        if self.shutting_down:
            return []
        targets = {role for role in roles if role in self.children}
        if targets & set(self.pipeline):
            # The stages share queues: a drain through the end-of-stream marker
            # takes the whole pipeline down cleanly, and it restarts as one.
            targets |= set(self.pipeline)
        orders: Orders = []
        for role in sorted(targets):
            orders += self._ask_to_stop(self.children[role], now + self.policy.stop_timeout, now)
        return orders

    # -- queries ------------------------------------------------------------

    @property
    def all_running(self) -> bool:
        """Every child that should run does (a standby's pipeline should not)."""
        return all(child.state is S.RUNNING for child in self.children.values() if self._wanted(child))

    @property
    def standing_by(self) -> bool:
        return self.gate.enabled and not self.gate.may_start()

    @property
    def finished(self) -> bool:
        return self.shutting_down and not any(c.has_process for c in self.children.values())

    def starting(self) -> list[str]:
        return [c.role for c in self.children.values() if c.state is S.STARTING]

    def next_deadline(self) -> float:
        times = [c.deadline for c in self.children.values() if c.state is S.STOPPING]
        if not self.shutting_down:
            times += [c.restart_at for c in self.children.values() if c.state in (S.BACKOFF, S.STOPPED)]
        return min(times, default=math.inf)

    def watchdog_ok(self, now: float) -> bool:
        """WATCHDOG=1 is deserved while every child is healthy or still recovering
        within its budget. During a shutdown our own deadlines bound the drain."""
        if self.shutting_down:
            return True
        budget = self.policy.unhealthy_budget
        return all(c.unhealthy_since is None or now - c.unhealthy_since <= budget
                   for c in self.children.values())

    def states(self) -> dict[str, str]:
        return {role: child.state.value for role, child in self.children.items()}

    # -- decisions ----------------------------------------------------------

    def _failed(self, child: Child, exitcode: int, now: float) -> Orders:
        fatal = boot_exit_code(exitcode, child.state, self.ever_ready)
        self._note(f"{child.role} {describe_exit(exitcode)}")
        if fatal is not None:
            child.change(S.FATAL, now)
            return self.shutdown(now, fatal)
        self._schedule_restart(child, now)
        child.change(S.BACKOFF, now)
        if not self._within_intensity(now):
            return self.shutdown(now, ExitCode.RESTART_LIMIT)
        return self._stop_peers(child, now)

    def _check_stuck(self, child: Child, pulse: Pulse, now: float) -> Orders:
        note_progress(child, pulse, now)
        if self.shutting_down:
            return []
        if is_stuck(child, pulse.beat, now, self.policy):
            silent = now - max(pulse.beat, child.started_at)
            self._note(f"{child.role} stuck: no heartbeat for {silent:.0f}s")
        elif is_stalled(child, pulse, now, self.policy):
            idle = now - max(child.progress_since, child.since)
            self._note(f"{child.role} stuck: holding work without progress for {idle:.0f}s")
        else:
            return []
        self._schedule_restart(child, now)
        self._signal(child, Escalation.TERMINATED, now + self.policy.kill_grace, now)
        orders = [Order(Verb.DUMP, child.role), Order(Verb.TERM, child.role)]
        if not self._within_intensity(now):
            return orders + self.shutdown(now, ExitCode.RESTART_LIMIT)
        return orders + self._stop_peers(child, now)

    def _escalate(self, child: Child, now: float) -> Orders:
        if child.state is not S.STOPPING or now < child.deadline:
            return []
        if child.escalation is Escalation.ASKED:
            child.escalation, child.deadline = Escalation.TERMINATED, now + self.policy.kill_grace
            return [Order(Verb.TERM, child.role)]
        if child.escalation is Escalation.TERMINATED:
            log.warning("%s did not exit %.0fs after SIGTERM; sending SIGKILL", child.role, self.policy.kill_grace)
            child.escalation, child.deadline = Escalation.KILLED, math.inf
            return [Order(Verb.KILL, child.role)]
        return []

    def _start_due(self, now: float) -> Orders:
        orders: Orders = []
        for child in self.children.values():
            if child.role not in self.pipeline and self._due(child, now):
                orders += self._spawn(child, now)
        pipeline = [self.children[role] for role in self.pipeline]
        if pipeline and self.gate.may_start() and all(self._due(child, now) for child in pipeline):
            self.gate.started()
            orders.append(Order(Verb.REBUILD))
            for child in pipeline:
                orders += self._spawn(child, now)
        return orders

    def _release_orphans(self, now: float) -> Orders:
        """A pipeline stage waiting for an end-of-stream marker that will not come
        (its upstream is gone and did not exit cleanly) is told to stop by SIGTERM."""
        orders: Orders = []
        for upstream, role in zip(self.pipeline, self.pipeline[1:]):
            child, above = self.children[role], self.children[upstream]
            waiting = child.state is S.STOPPING and child.escalation is Escalation.ASKED
            if waiting and not above.has_process and above.last_exit != 0:
                self._signal(child, Escalation.TERMINATED, now + self.policy.kill_grace, now)
                orders.append(Order(Verb.TERM, role))
        return orders

    def _fenced(self, child: Child, now: float) -> Orders:
        """Another daemon took over while this pipeline ran: no failure, stand by."""
        self._note(f"{child.role}: another daemon has taken over the lease; standing by")
        child.change(S.BACKOFF, now)
        child.restart_at = now
        self.gate.refuse()
        return self._stop_pipeline(now)

    def _stop_pipeline(self, now: float) -> Orders:
        orders: Orders = []
        for role in self.pipeline:
            child = self.children[role]
            if child.state in (S.STARTING, S.RUNNING):
                self._signal(child, Escalation.TERMINATED, now + self.policy.kill_grace, now)
                orders.append(Order(Verb.TERM, role))
        return orders

    def _stop_last(self, now: float) -> Orders:
        """During a shutdown, once the pipeline is gone: stop the roles kept for last."""
        if any(self.children[role].has_process for role in self.pipeline):
            return []
        orders: Orders = []
        for role in sorted(self.last):
            orders += self._stop_for_good(self.children[role], self.stop_deadline, now)
        return orders

    # -- helpers ------------------------------------------------------------

    def _wanted(self, child: Child) -> bool:
        return child.role not in self.pipeline or self.gate.may_start()

    def _stop_for_good(self, child: Child, deadline: float, now: float) -> Orders:
        if child.state in (S.STOPPED, S.BACKOFF):
            child.change(S.EXITED, now)
            return []
        if child.state is S.STOPPING:
            child.deadline = min(child.deadline, deadline)
            return []
        if child.state in (S.STARTING, S.RUNNING):
            return self._ask_to_stop(child, deadline, now)
        return []

    def _ask_to_stop(self, child: Child, deadline: float, now: float) -> Orders:
        """Intake stages get a stop message; the others wait for end-of-stream."""
        if child.state not in (S.STARTING, S.RUNNING):
            return []
        child.change(S.STOPPING, now)
        child.escalation, child.deadline, child.restart_at = Escalation.ASKED, deadline, now
        return [Order(Verb.STOP, child.role)] if self._is_intake(child.role) else []

    def _stop_peers(self, failed: Child, now: float) -> Orders:
        """The rest of the pipeline stops by SIGTERM: a graceful drain through
        queues that the failed stage may have left locked could block forever."""
        if failed.role not in self.pipeline:
            return []
        orders: Orders = []
        for role in self.pipeline:
            peer = self.children[role]
            if peer is not failed and peer.state in (S.STARTING, S.RUNNING):
                self._signal(peer, Escalation.TERMINATED, now + self.policy.kill_grace, now)
                orders.append(Order(Verb.TERM, role))
        return orders

    def _signal(self, child: Child, level: Escalation, deadline: float, now: float) -> None:
        if child.state is not S.STOPPING:
            child.change(S.STOPPING, now)
        child.escalation, child.deadline = level, deadline

    def _schedule_restart(self, child: Child, now: float) -> None:
        child.attempt = next_attempt(child, now, self.policy)
        delay = backoff_delay(child.attempt, self.policy.backoff_initial, self.policy.backoff_max, self.jitter())
        child.restart_at = now + delay
        log.info("%s: restart backoff %.1fs (attempt %d)", child.role, delay, child.attempt)

    def _within_intensity(self, now: float) -> bool:
        if self.intensity.record(now):
            return True
        self._note(f"more than {self.policy.restart_limit} restarts in {self.policy.restart_window:.0f}s; giving up")
        return False

    def _spawn(self, child: Child, now: float) -> Orders:
        child.change(S.STARTING, now)
        child.started_at, child.ready_at = now, None
        return [Order(Verb.SPAWN, child.role)]

    def _due(self, child: Child, now: float) -> bool:
        return child.state in (S.STOPPED, S.BACKOFF) and now >= child.restart_at

    def _is_intake(self, role: str) -> bool:
        return role not in self.pipeline[1:]

    def _track_health(self, pulses: Mapping[str, Pulse], now: float) -> None:
        for child in self.children.values():
            fresh = now - pulses.get(child.role, Pulse()).beat <= self.policy.heartbeat_timeout
            idle_on_purpose = not self._wanted(child) and not child.has_process
            if (child.state is S.RUNNING and fresh) or idle_on_purpose:
                child.unhealthy_since = None
            elif child.unhealthy_since is None:
                child.unhealthy_since = now

    def _note(self, problem: str) -> None:
        log.warning("%s", problem)
        self.problem = problem
