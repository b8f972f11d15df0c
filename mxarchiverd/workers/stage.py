"""The contract between a stage's logic and the process shell that runs it.

A stage knows nothing about processes, queues or signals: the runner
(workers/runner.py) feeds it, stamps its heartbeat, applies reloads and stops it.
That keeps the logic testable in-process against real databases.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

from mxarchiverd.leadership import Fence
from mxarchiverd.config import Config
from mxarchiverd.pipeline.messages import StageMessage

# The runner turns messages into versioned orjson envelopes (pipeline/channels.py).
Message = StageMessage


class Stage(abc.ABC):
    role: ClassVar[str]
    # The leadership lease's fencing token this pipeline runs under (daemon.ha), set by
    # the runner before open(); None without HA, and for stages outside the pipeline.
    fence: Fence | None = None

    def __init__(self, config: Config, beat: Callable[[], None]) -> None:
        self.config = config
        # Call during long work (a big batch, a large upload) to prove progress:
        # it stamps the heartbeat and counts as progress. Only for real progress;
        # the runner's own loop proves that the process is alive.
        self.beat = beat

    @abc.abstractmethod
    def open(self) -> None:
        """Connect to what the stage needs; raise BootError if that cannot work."""

    def close(self) -> None:
        """Release connections; called once on the way out, also after errors."""

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config's hot settings (rooms, batch size, intervals)."""
        self.config = config

    def stats(self) -> dict[str, float]:
        """Counters for the supervisor's STATUS line (see supervisor/status.py)."""
        return {}

    def holding(self) -> bool:
        """True while the stage holds work it has not finished outside handle()
        (transfers on worker threads). Holding work without progress for
        daemon.heartbeat_timeout gets the stage restarted as stuck."""
        return False


def opened(stage: Stage, *names: str) -> list[Any]:
    """The named attributes that open() got as far as setting (and that are not None).

    close() runs after a failed open() too (workers/runner.py), so it must close what
    open() did open without tripping over what it never reached: an AttributeError
    there would be logged on top of the real start-up error.
    """
    found = vars(stage)
    return [found[name] for name in names if found.get(name) is not None]


class SourceStage(Stage):
    """A stage that makes work by itself: the poller, the uploader."""

    @abc.abstractmethod
    def produce(self) -> tuple[list[Message], float]:
        """Do one round; return messages for downstream and seconds until the next round."""


class TransformStage(Stage):
    """A stage fed by its upstream queue: the enricher, the dbwriter."""

    # How many messages already waiting in the queue the runner may hand over at once
    # (handle_many); 1: one at a time.
    takes_waiting: ClassVar[int] = 1
    # How many messages the runner reads ahead of the stage, on a thread
    # (workers/prefetch.py); 0: read in the stage's own loop.
    prefetch: ClassVar[int] = 0

    @abc.abstractmethod
    def handle(self, message: Message) -> list[Message]:
        """Process one message; return messages for downstream."""

    def handle_many(self, messages: list[Message]) -> list[Message]:
        """Process messages that were waiting together (at most takes_waiting), in order."""
        return [output for message in messages for output in self.handle(message)]

    def flush(self) -> list[Message]:
        """End of stream: finish buffered work before the process exits."""
        return []
