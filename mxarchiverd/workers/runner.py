"""The child process shell around one Stage: the same skeleton for every role.

It owns everything about being a process (signals, the heartbeat, the queues,
control messages, noticing the supervisor's death) so that a Stage is plain
logic. Exit codes: 0 after a complete drain, a BootError's code when open()
fails for good, CRASH otherwise (exitcodes.py).

Test hook: MXARCHIVERD_STAGES, a JSON object of role -> "module:Class" (the
module may be a path to a .py file), replaces the registry in workers/__init__.py.
"""
from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import json
import logging
import os
import queue
import signal
import sys
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import setproctitle

from mxarchiverd.leadership import Fence
from mxarchiverd.config import Config
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.logs import batch_context
from mxarchiverd.logs import configure as configure_logs
from mxarchiverd.pipeline.channels import (
    END_OF_STREAM, Reconfigure, StageChannels, Stop, decode, decode_control, encode, is_end,
)
from mxarchiverd.pipeline.heartbeat import HeartbeatSlot
from mxarchiverd.pipeline.messages import from_wire, to_wire
from mxarchiverd.redaction import secret_values
from mxarchiverd.workers import PIPELINE, STAGES
from mxarchiverd.workers.memory import return_large_blocks
from mxarchiverd.workers.prefetch import Prefetcher
from mxarchiverd.workers.stage import Message, SourceStage, Stage, TransformStage

log = logging.getLogger(__name__)

# One turn of the loop at most: the heartbeat, control messages, SIGTERM and the
# parent check are all noticed within it (a supervisor killed by SIGKILL leaves
# no child behind for more than a tick or two).
TICK = 0.5
STAGES_VARIABLE = "MXARCHIVERD_STAGES"


def stage_registry(environ: Mapping[str, str]) -> dict[str, str]:
    """role -> "module:Class": workers.STAGES, or the test hook's JSON object."""
    raw = environ.get(STAGES_VARIABLE)
    if not raw:
        return dict(STAGES)
    registry = json.loads(raw)
    if not isinstance(registry, dict) or not all(isinstance(v, str) and ":" in v for v in registry.values()):
        raise ValueError(f'{STAGES_VARIABLE} must be a JSON object of role -> "module:Class"')
    present = [role for role in PIPELINE if role in registry]
    if present and len(present) != len(PIPELINE):
        raise ValueError(f"{STAGES_VARIABLE} must name all of {', '.join(PIPELINE)} or none")
    return registry


def load_stage_class(spec: str) -> type[Stage]:
    module_name, _, class_name = spec.rpartition(":")
    module = _import_file(Path(module_name)) if module_name.endswith(".py") else importlib.import_module(module_name)
    stage = getattr(module, class_name)
    if not (isinstance(stage, type) and issubclass(stage, (SourceStage, TransformStage))):
        raise TypeError(f"{spec} is not a SourceStage or TransformStage")
    return stage


def _import_file(path: Path) -> ModuleType:
    name = f"mxarchiverd_stage_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class StopFlag:
    """SIGTERM (and SIGINT unless at a terminal) only records the request."""

    def __init__(self) -> None:
        self.set = False

    def install(self, interactive: bool) -> None:
        signal.signal(signal.SIGTERM, self._record)
        # At a terminal, ctrl-C reaches the whole process group: leave it to the
        # supervisor, which drains the pipeline in order.
        signal.signal(signal.SIGINT, signal.SIG_IGN if interactive else self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.set = True


def run_child(role: str, stage_spec: str, config: Config, channels: StageChannels, heartbeat: HeartbeatSlot,
              control: Connection, *, generation: int = 1, interactive: bool = False,
              fence: Fence | None = None) -> None:
    """The multiprocessing target of every child."""
    faulthandler.enable()
    # The supervisor sends SIGUSR1 before killing a stuck child: the journal then
    # shows where it was stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    setproctitle.setproctitle(f"mxarchiverd: {role}")
    return_large_blocks()
    _configure_logging(role, config)
    stop = StopFlag()
    stop.install(interactive)
    runner = ChildRunner(role, stage_spec, config, channels, heartbeat, control, stop, generation, fence=fence)
    sys.exit(runner.run())


def _configure_logging(role: str, config: Config) -> None:
    """One line per record (logging.format), every secret of the config masked (logs.py)."""
    configure_logs(role, config.logging.level, config.logging.format, secret_values(config))


def _crash_code(role: str, exc: Exception) -> int:
    """A stage fenced off by a takeover (daemon.ha) exits FENCED, without a traceback:
    it is no bug, and the supervisor stands by instead of counting a failure."""
    if getattr(exc, "exit_code", None) == ExitCode.FENCED:
        log.warning("%s stops: %s", role, exc)
        return ExitCode.FENCED
    log.exception("%s crashed", role)
    return ExitCode.CRASH


def _boot_failure(role: str, exc: Exception) -> int:
    """BootError, and the codebase's other boot exceptions that carry an ExitCode
    (DatabaseUnavailable, SchemaMismatch), exit with that code; anything else is a crash."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, ExitCode):
        log.error("%s cannot start: %s", role, exc)
        return int(code)
    log.exception("%s failed to start", role)
    return ExitCode.CRASH


class ChildRunner:
    def __init__(self, role: str, stage_spec: str, config: Config, channels: StageChannels,
                 heartbeat: HeartbeatSlot, control: Connection, stop: StopFlag, generation: int, *,
                 clock: Callable[[], float] = time.monotonic, getppid: Callable[[], int] = os.getppid,
                 fence: Fence | None = None) -> None:
        self.role, self.stage_spec, self.config, self.fence = role, stage_spec, config, fence
        self.inbox, self.outbox = channels.inbox, channels.outbox
        self.slot, self.control, self.stop = heartbeat, control, stop
        self.clock, self.getppid = clock, getppid
        # Under forkserver the parent is the fork server, which exits when the supervisor dies.
        self.parent = getppid()
        self.stage: Stage | None = None
        self.prefetcher: Prefetcher | None = None
        self.stopping = False  # a Stop control message: end intake, drain
        self.orphaned = False
        self.next_round = 0.0
        heartbeat.set_generation(generation)

    def beat(self) -> None:
        self.slot.beat(self.clock())

    def stage_progress(self) -> None:
        """The stage's own proof of progress during long work (Stage.beat)."""
        self.beat()
        self.slot.add_progress(1)

    def run(self) -> int:
        self.beat()
        failed = self._boot()
        if failed is not None:
            return failed
        try:
            return self._serve()
        except Exception as exc:
            self._let_go_of_outbox()
            return _crash_code(self.role, exc)
        finally:
            self._close()

    def _boot(self) -> int | None:
        try:
            self.stage = load_stage_class(self.stage_spec)(self.config, self.stage_progress)
            self.stage.fence = self.fence
            self.stage.open()
        except Exception as exc:
            self._close()
            return _boot_failure(self.role, exc)
        if isinstance(self.stage, TransformStage) and self.stage.prefetch and self.inbox is not None:
            self.prefetcher = Prefetcher(self.inbox, self.stage.prefetch).start()
        self.slot.mark_ready()
        log.info("%s ready", self.role)
        return None

    def _serve(self) -> int:
        assert self.stage is not None
        turn = self._source_turn if isinstance(self.stage, SourceStage) else self._transform_turn
        while True:
            if self._parent_gone():
                return self._abandon("the supervisor is gone")
            self.beat()
            self._read_control()
            outcome = turn()
            self.slot.write_stats(self.stage.stats())
            self.slot.set_holding(self.stage.holding())
            if outcome is not None:
                return outcome

    def _source_turn(self) -> int | None:
        assert isinstance(self.stage, SourceStage)
        if self.stopping or self.stop.set:
            return self._end_stream()
        wait = self.next_round - self.clock()
        if wait > 0:
            self._wait_for_control(min(wait, TICK))
            return None
        messages, delay = self.stage.produce()
        self.next_round = self.clock() + delay
        return None if self._forward(messages) else self._end_stream()

    def _transform_turn(self) -> int | None:
        assert isinstance(self.stage, TransformStage) and self.inbox is not None
        if self.stop.set:
            return self._end_stream()
        try:
            envelope = self._receive(TICK)
        except queue.Empty:
            return None
        if is_end(envelope):
            return self._end_stream()
        self.slot.set_holding(True)
        messages, ended = self._waiting([from_wire(envelope)], self.stage.takes_waiting)
        try:
            outputs = self.stage.handle_many(messages) if len(messages) > 1 else self.stage.handle(messages[0])
        except Exception:
            for message in messages:
                what, extra = batch_context(message)
                log.error("%s failed on %s", self.role, what, extra=extra)
            raise
        self.slot.add_progress(len(messages))
        self.slot.set_holding(False)
        if not self._forward(outputs) or ended:
            return self._end_stream()
        return None

    def _waiting(self, messages: list[Message], limit: int) -> tuple[list[Message], bool]:
        """`messages` and those already waiting behind them, up to `limit`; and whether the
        end-of-stream marker came after them."""
        while len(messages) < limit:
            try:
                envelope = self._receive(None)
            except queue.Empty:
                break
            if is_end(envelope):
                return messages, True
            messages.append(from_wire(envelope))
        return messages, False

    def _receive(self, timeout: float | None) -> dict[str, Any]:
        """The next envelope from upstream, waiting up to `timeout` (None: only one
        ready now); queue.Empty if there is none."""
        if self.prefetcher is None:
            assert self.inbox is not None
            return decode(self.inbox.get(timeout=timeout) if timeout is not None else self.inbox.get_nowait())
        return self.prefetcher.get(timeout) if timeout is not None else self.prefetcher.get_nowait()

    def _end_stream(self) -> int:
        """Flush, pass the end-of-stream marker on; exit 0 only if downstream got it."""
        outputs = self.stage.flush() if isinstance(self.stage, TransformStage) else []
        if self._forward(outputs) and self._put(END_OF_STREAM):
            log.info("%s drained", self.role)
            return ExitCode.OK
        return self._abandon("downstream is not taking the end-of-stream marker")

    def _forward(self, messages: list[Message]) -> bool:
        if self.outbox is None:
            if messages:
                log.warning("%s has no downstream; %d message(s) not passed on", self.role, len(messages))
            return True
        for message in messages:
            if not self._put(encode(to_wire(message))):
                return False
        self.slot.add_progress(len(messages))
        return True

    def _put(self, data: bytes) -> bool:
        """Blocking put in short steps, beating meanwhile: a full queue is backpressure,
        not a hang. Gives up on SIGTERM or the supervisor's death (the durable
        cursor makes the lost batch come back)."""
        if self.outbox is None:
            return True
        while True:
            try:
                self.outbox.put(data, timeout=TICK)
                return True
            except queue.Full:
                pass
            self.beat()
            self._read_control()
            if self.stop.set or self._parent_gone():
                return False

    def _wait_for_control(self, timeout: float) -> None:
        if self.control.poll(timeout):
            self._read_control()

    def _read_control(self) -> None:
        try:
            while self.control.poll(0):
                self._apply(decode_control(self.control.recv()))
        except (EOFError, OSError):
            self.orphaned = True  # our end of the pipe outlived the supervisor

    def _apply(self, message: Stop | Reconfigure) -> None:
        if isinstance(message, Stop):
            self.stopping = True  # a TransformStage keeps going until end-of-stream arrives
            return
        assert self.stage is not None
        self.stage.reconfigure(message.config)
        self.config = message.config
        logging.getLogger().setLevel(message.config.logging.level)
        self.slot.set_generation(message.generation)
        log.info("%s reconfigured (generation %d)", self.role, message.generation)

    def _parent_gone(self) -> bool:
        return self.orphaned or self.getppid() != self.parent

    def _abandon(self, why: str) -> int:
        log.warning("%s exiting without a complete drain: %s", self.role, why)
        self._let_go_of_outbox()
        return ExitCode.CRASH

    def _let_go_of_outbox(self) -> None:
        # Do not wait at exit for the queue's feeder thread to write into a pipe that
        # nobody may read again; what it held comes back from the durable cursor.
        if self.outbox is not None:
            self.outbox.cancel_join_thread()

    def _close(self) -> None:
        if self.stage is None:
            return
        try:
            self.stage.close()
        except Exception:
            log.exception("%s: error while closing", self.role)
