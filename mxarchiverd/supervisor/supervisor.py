"""The supervisor process: one loop, one wait, the only process that talks to systemd.

Each turn waits in exactly one call, multiprocessing.connection.wait() over the
signal wakeup pipe and the children's sentinels, with a timeout equal to the
next deadline (watchdog ping, backoff expiry, stop escalation, heartbeat scan).
Then: dispatch signals (handle_<signame>), reap exits through Process.exitcode
(never waitpid(-1), which would steal statuses from multiprocessing), read the
heartbeat slots, let the Fleet decide, execute its Orders, tell systemd.

The supervisor opens no database connection and starts no thread: the queues
it creates are only ever used by the children.
"""
from __future__ import annotations

import faulthandler
import logging
import math
import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess

import setproctitle

from mxarchiverd.config import Config, ConfigError, load_config
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.metrics import directory as metrics_directory
from mxarchiverd.metrics import instruments as metrics
from mxarchiverd.pipeline.channels import (
    PipelineQueues, Reconfigure, StageChannels, Stop, control_pipe, send_control,
)
from mxarchiverd.pipeline.heartbeat import HeartbeatBoard
from mxarchiverd.supervisor.children import ChildState, Policy
from mxarchiverd.supervisor.fleet import Fleet, Order
from mxarchiverd.supervisor.notify import Notifier, monotonic_usec, status_field, take_notify_env
from mxarchiverd.supervisor.reload import ReloadPlan, needs_push, plan_reload
from mxarchiverd.supervisor.signals import WakeupPipe
from mxarchiverd.supervisor.status import (
    StatusView, aggregate, describe_config_error, redact, render_status, secret_values,
)
from mxarchiverd.leadership import Fence, leading_token
from mxarchiverd.workers import LEASE_ROLE, METRICS_STAGE, PIPELINE, with_lease_keeper
from mxarchiverd.workers.runner import run_child, stage_registry

log = logging.getLogger(__name__)

# While a child boots (or has a reconfigure to acknowledge), look at its slot this often.
READY_POLL = 0.05
# Counters change all the time; a STATUS= with only new numbers waits this long.
STATUS_INTERVAL = 2.0

Loader = Callable[[str | None], Config]


def run_supervisor(config: Config, *, stages: Mapping[str, str] | None = None) -> int:
    """Run every stage until SIGTERM/SIGINT or a give-up; return the exit code.

    `stages` (role -> "module:Class") defaults to workers.STAGES, or to the
    MXARCHIVERD_STAGES test hook (workers/runner.py).
    """
    faulthandler.enable()
    setproctitle.setproctitle("mxarchiverd: supervisor")
    # Before the first child or the fork server starts: they copy our environment.
    env = take_notify_env(os.environ, os.getpid())
    registry = dict(stages) if stages is not None else stage_registry(os.environ)
    if config.metrics.listen is not None:
        registry.setdefault(*METRICS_STAGE)
    # Before the first child too: every process must find its metrics directory.
    metrics_dir = metrics_directory.prepare(config)
    registry = with_lease_keeper(registry, config.daemon.ha.enabled)
    notifier, wakeup = Notifier(env.socket), WakeupPipe()
    wakeup.install()
    try:
        return Supervisor(config, registry, notifier, wakeup,
                          watchdog_interval=env.watchdog_interval, interactive=_interactive()).run()
    finally:
        wakeup.close()
        notifier.close()
        metrics_directory.remove(metrics_dir)


def _context(method: str) -> SpawnContext | ForkServerContext:
    """Never fork: a forked child would inherit the supervisor's handlers and wakeup fd,
    and fork with threads or open libpq sockets around is unsafe (config allows only these two)."""
    ctx = multiprocessing.get_context(method)
    if not isinstance(ctx, (SpawnContext, ForkServerContext)):
        raise ValueError(f"unsupported start method: {method}")
    return ctx


def _interactive() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False


class Supervisor:
    def __init__(self, config: Config, stages: Mapping[str, str], notifier: Notifier, wakeup: WakeupPipe, *,
                 watchdog_interval: float | None, interactive: bool = False,
                 clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] = random.random,
                 load: Loader = load_config, kill: Callable[[int, int], None] = os.kill) -> None:
        self.config, self.stages, self.roles = config, dict(stages), tuple(stages)
        self.notifier, self.wakeup = notifier, wakeup
        self.watchdog_interval, self.interactive = watchdog_interval, interactive
        self.clock, self.load, self.kill = clock, load, kill
        self.ctx = _context(config.daemon.start_method)
        if config.daemon.start_method == "forkserver":
            # Children then fork from a server that has the runner imported already.
            self.ctx.set_forkserver_preload(["mxarchiverd.workers.runner"])
        self.ha = config.daemon.ha.enabled and LEASE_ROLE in self.stages
        self.fleet = Fleet(self.roles, PIPELINE, Policy.from_config(config.daemon), jitter,
                           gated=self.ha, last=(LEASE_ROLE,))
        self.board = HeartbeatBoard(self.ctx, self.roles)
        self.procs: dict[str, BaseProcess] = {}
        self.controls: dict[str, Connection] = {}
        self.sent: dict[str, int] = {}  # config generation each child has or was sent
        self.queues: PipelineQueues | None = None
        self.generation = 1
        self.ready_sent = self.stopping_sent = self.watchdog_withheld = False
        self.reload_error: str | None = None
        self.next_watchdog = 0.0
        self.status_sent: tuple[str, tuple[object, ...]] = ("", ())
        self.status_at = -math.inf
        self.failed_spawns: list[str] = []
        self.spawned: set[str] = set()  # roles started at least once (a later spawn is a restart)

    def run(self) -> int:
        try:
            self._execute(self.fleet.begin(self.clock()))
            while not self.fleet.finished:
                self._turn()
        except BaseException:
            self.kill_all()  # a supervisor bug: no child may outlive us
            raise
        self._release()
        code = self.fleet.exit_code or ExitCode.OK
        log.info("supervisor exiting with code %d", code)
        return int(code)

    def _turn(self) -> None:
        wait([self.wakeup.fileno(), *(p.sentinel for p in self.procs.values())], self._timeout(self.clock()))
        for signum in self.wakeup.drain():
            self._dispatch(signum)
        now = self.clock()
        self._reap(now)
        self._observe(now)
        self._follow_lease(now)
        self._execute(self.fleet.tick(now, self.board.pulses()))
        self._push_config()
        self._announce(now)
        self._measure_queues()

    def _timeout(self, now: float) -> float:
        policy = self.fleet.policy
        deadlines = [self.fleet.next_deadline(), now + min(1.0, policy.heartbeat_timeout / 4)]
        if self.watchdog_interval:
            deadlines.append(self.next_watchdog)
        if self.fleet.starting() or self._unacknowledged():
            deadlines.append(now + READY_POLL)
        return max(0.0, min(deadlines) - now)

    # -- signals --------------------------------------------------------------

    def _dispatch(self, signum: signal.Signals) -> None:
        handler = getattr(self, f"handle_{signum.name[3:].lower()}", None)
        if handler is None:
            log.warning("no handler for %s", signum.name)
            return
        handler()

    def handle_hup(self) -> None:
        """SIGHUP: re-read the config file and apply what changed.

        RELOADING=1 (with MONOTONIC_USEC=, as Type=notify-reload requires), then
        parse. An invalid file changes nothing: each problem is logged with its
        key path and STATUS= names the first. A valid one is applied by diff:
        hot keys by a reconfigure message, others by restarting the stages that
        use them. READY=1 follows either way. Ignored while stopping.
        """
        if self.fleet.shutting_down:
            log.info("SIGHUP ignored: stopping")
            return
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading configuration")
        self._reload(self.clock())
        if self.ready_sent:
            self._notify("READY=1")

    def handle_term(self) -> None:
        """SIGTERM: stop gracefully, exit 0.

        STOPPING=1; the intake stages (poller, uploader) get a stop message, an
        end-of-stream marker flows down the pipeline, each stage flushes and
        exits. Past daemon.stop_timeout, stragglers get SIGTERM, then SIGKILL.
        A second SIGTERM or SIGINT escalates at once.
        """
        now = self.clock()
        if self.fleet.shutting_down:
            log.warning("asked again to stop: escalating")
            self.fleet.hurry(now)
            return
        log.info("stopping: draining the pipeline (at most %.0fs)", self.fleet.policy.stop_timeout)
        self._execute(self.fleet.shutdown(now, ExitCode.OK))

    def handle_int(self) -> None:
        """SIGINT (ctrl-C at a terminal): the same as SIGTERM."""
        self.handle_term()

    # -- reload ---------------------------------------------------------------

    def _reload(self, now: float) -> None:
        path = str(self.config.path) if self.config.path else None
        try:
            new = self.load(path)
        except ConfigError as exc:
            self._reload_failed(exc)
            return
        except Exception as exc:  # a loader bug must not take the running daemon down
            log.exception("reload failed unexpectedly; running configuration kept")
            self.reload_error = f"unexpected {type(exc).__name__} while reading the config (see the log)"
            return
        self.reload_error = None
        self._apply(plan_reload(self.config, new, self.roles), now)

    def _reload_failed(self, error: ConfigError) -> None:
        secrets = list(secret_values(self.config))
        for path, message in error.problems:
            log.error("reload rejected, running configuration kept: %s: %s", path, redact(message, secrets))
        self.reload_error = describe_config_error(error, secrets)

    def _apply(self, plan: ReloadPlan, now: float) -> None:
        for path in plan.refused:
            log.warning("reload: %s changed, but only a full restart applies it; keeping the running value", path)
        if not plan.changed:
            log.info("reload: nothing to apply")
            return
        log.info("reload: %s changed; restarting: %s; reconfiguring: %s", ", ".join(plan.applied),
                 ", ".join(sorted(plan.restart)) or "none", ", ".join(sorted(plan.hot)) or "none")
        self.config, self.generation = plan.config, self.generation + 1
        if plan.supervisor:
            self.fleet.set_policy(Policy.from_config(plan.config.daemon))
        logging.getLogger().setLevel(plan.config.logging.level)
        # Hot roles get the new config from _push_config(), each once it is ready for it.
        self._execute(self.fleet.restart(plan.restart, now))

    def _push_config(self) -> None:
        for role, conn in self.controls.items():
            running = self.fleet.children[role].state is ChildState.RUNNING
            if running and needs_push(self.sent[role], self.board.slot(role).generation, self.generation):
                if send_control(conn, Reconfigure(self.config, self.generation)):
                    self.sent[role] = self.generation

    def _unacknowledged(self) -> bool:
        return any(self.sent[role] > self.board.slot(role).generation or self.sent[role] < self.generation
                   for role in self.controls if self.fleet.children[role].state is ChildState.RUNNING)

    # -- children -------------------------------------------------------------

    def _reap(self, now: float) -> None:
        for role, proc in list(self.procs.items()):
            code = proc.exitcode
            if code is not None:
                self._forget(role)
                self._execute(self.fleet.exited(role, code, now))

    def _forget(self, role: str) -> None:
        proc = self.procs.pop(role)
        if proc.pid is not None:
            metrics.process_gone(proc.pid)
        proc.close()
        self.controls.pop(role).close()

    def _observe(self, now: float) -> None:
        for role in self.fleet.starting():
            if role in self.procs and self.board.slot(role).ready:
                self.fleet.ready(role, now)
                log.info("%s is ready (pid %s)", role, self.procs[role].pid)

    def _follow_lease(self, now: float) -> None:
        """daemon.ha: lead while the lease keeper's slot shows a lease valid by our clock."""
        if self.ha:
            lease_until, token = self.board.slot(LEASE_ROLE).leadership
            self._execute(self.fleet.set_leadership(leading_token(lease_until, token, now), now))

    def _fence(self, role: str) -> Fence | None:
        """What the pipeline's batches check (archive/leadership.py): the token it starts under."""
        token = self.fleet.gate.running_token
        if not self.ha or role not in self.fleet.pipeline or token is None:
            return None
        return Fence(token, idle_timeout=self.config.daemon.ha.lease_duration)

    def _execute(self, orders: list[Order]) -> None:
        for order in orders:
            getattr(self, f"_do_{order.verb.value}")(order.role)
        failed, self.failed_spawns = self.failed_spawns, []
        for role in failed:  # after the batch, so a half-executed batch cannot interleave
            self._execute(self.fleet.exited(role, ExitCode.CRASH, self.clock()))

    def _do_rebuild(self, role: str) -> None:
        if self.queues is not None:
            self.queues.close()
        self.queues = PipelineQueues(self.ctx, self.fleet.pipeline)

    def _do_spawn(self, role: str) -> None:
        reader, writer = control_pipe()
        slot = self.board.slot(role)
        slot.reset()
        channels = self.queues.for_role(role) if self.queues else StageChannels()
        proc = self.ctx.Process(
            target=run_child, name=f"mxarchiverd-{role}",
            args=(role, self.stages[role], self.config, channels, slot, reader),
            kwargs={"generation": self.generation, "interactive": self.interactive, "fence": self._fence(role)})
        try:
            proc.start()
        except Exception:
            log.exception("cannot start %s", role)
            writer.close()
            self.failed_spawns.append(role)
            return
        finally:
            reader.close()  # the child has its own copy now
        self.procs[role], self.controls[role], self.sent[role] = proc, writer, self.generation
        log.info("started %s (pid %s)", role, proc.pid)
        if role in self.spawned:
            metrics.stage_restarted(role)
        self.spawned.add(role)

    def _measure_queues(self) -> None:
        """Batches waiting on each pipeline edge (qsize reads a semaphore; nothing is received)."""
        if not metrics.enabled() or self.queues is None:
            return
        names = self.queues.pipeline
        depths = {}
        for (upstream, downstream), queue in zip(zip(names, names[1:]), self.queues.edges):
            try:
                depths[f"{upstream}->{downstream}"] = queue.qsize()
            except (NotImplementedError, OSError):
                return
        metrics.queue_depths(depths)

    def _do_stop(self, role: str) -> None:
        if role in self.controls:
            send_control(self.controls[role], Stop())

    def _do_dump(self, role: str) -> None:
        self._signal(role, signal.SIGUSR1)

    def _do_term(self, role: str) -> None:
        self._signal(role, signal.SIGTERM)

    def _do_kill(self, role: str) -> None:
        self._signal(role, signal.SIGKILL)

    def _signal(self, role: str, signum: signal.Signals) -> None:
        proc = self.procs.get(role)
        # exitcode polls first: a child already gone (its pid maybe reused) is not signalled.
        if proc is None or proc.pid is None or proc.exitcode is not None:
            return
        try:
            self.kill(proc.pid, signum)
        except ProcessLookupError:
            pass

    def kill_all(self) -> None:
        """Last resort when the supervisor itself fails."""
        for role in list(self.procs):
            self._signal(role, signal.SIGKILL)

    def _release(self) -> None:
        if self.queues is not None:
            self.queues.close()
        for role in list(self.procs):
            self._forget(role)

    # -- systemd --------------------------------------------------------------

    def _announce(self, now: float) -> None:
        if self.fleet.shutting_down and not self.stopping_sent:
            self.stopping_sent = True
            self._notify("STOPPING=1")
        elif not self.ready_sent and not self.fleet.shutting_down and self.fleet.all_running:
            self.ready_sent = True
            log.info("all stages ready")
            self._notify("READY=1")
        self._maybe_ping(now)
        self._maybe_status(now)

    def _maybe_ping(self, now: float) -> None:
        if not self.watchdog_interval or now < self.next_watchdog:
            return
        self.next_watchdog = now + self.watchdog_interval
        if self.fleet.watchdog_ok(now):
            self.notifier.send("WATCHDOG=1")
            if self.watchdog_withheld:
                log.info("every stage is healthy again: WATCHDOG=1 resumes")
            self.watchdog_withheld = False
        elif not self.watchdog_withheld:
            self.watchdog_withheld = True
            log.error("a stage stayed unhealthy past its budget: withholding WATCHDOG=1 so that systemd acts")

    def _maybe_status(self, now: float) -> None:
        text, meaning = self._status()
        fresh_numbers = now - self.status_at >= STATUS_INTERVAL
        if text != self.status_sent[0] and (meaning != self.status_sent[1] or fresh_numbers):
            self._notify()

    def _notify(self, *fields: str) -> None:
        """Send fields with the current STATUS= line in the same datagram."""
        text, meaning = self._status()
        self.notifier.send(*fields, status_field(text))
        self.status_sent, self.status_at = (text, meaning), self.clock()

    def _status(self) -> tuple[str, tuple[object, ...]]:
        """The STATUS= text, and the part of it that is not counters."""
        phase = "stopping" if self.fleet.shutting_down else "running" if self.ready_sent else "starting"
        if phase == "running" and self.fleet.standing_by:
            phase = "standby"
        view = StatusView(phase, self.fleet.states(), aggregate(self.board.stats()),
                          self.fleet.problem, self.reload_error)
        # Media jobs starting to die is news, not a counter tick: it goes out at once.
        meaning = (phase, tuple(view.states.items()), view.problem, view.reload_error, view.totals.media_dead > 0)
        return render_status(view), meaning
