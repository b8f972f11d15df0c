"""Test-only stages for running the real supervisor without databases.

Loaded in the children by file path through the MXARCHIVERD_STAGES hook
(workers/runner.py). Everything observable goes to files in the directory named
by MXARCHIVERD_FAKE_DIR, which the children inherit from the supervisor:

  pids/<role>        one line per process start: the pid
  archive.txt        the "archive": numbers written by the sink (FakeSink)
  emitted.txt        the highest number the source has put downstream
  setting-<role>     the processing.batch_size the stage currently runs with
  hang-<role>        marker: while it exists, open()/produce()/handle() hang
  crash-<role>       marker: open() raises RuntimeError (a crash at start)
  bootfail-<role>    marker: open() raises BootError(CONFIG)

The source resumes after the highest archived number, as the real poller resumes
from the durable cursor, so numbers lost in a killed process's queue come back.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar

from mxarchiverd.config import Config
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.pipeline.cursors import StreamCursor
from mxarchiverd.pipeline.messages import EventBatch, RowBatch
from mxarchiverd.exitcodes import BootError
from mxarchiverd.workers.stage import Message, SourceStage, Stage, TransformStage

DIR_VARIABLE = "MXARCHIVERD_FAKE_DIR"


def fake_dir() -> Path:
    return Path(os.environ[DIR_VARIABLE])


def archived_numbers(directory: Path) -> list[int]:
    path = directory / "archive.txt"
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


def numbers_batch(numbers: list[int]) -> EventBatch:
    """The fake source's batch: one "event" per number, the cursor at the last one."""
    return EventBatch(StreamCursor("fake", numbers[-1] if numbers else 0), [{"n": n} for n in numbers])


class _Markers:
    """Behaviour switched by marker files, shared by every fake stage."""

    role: ClassVar[str]

    def _marker(self, name: str) -> Path:
        return fake_dir() / f"{name}-{self.role}"

    def _hang_while_marked(self) -> None:
        # No beat while hanging: this is what a stuck stage looks like.
        while self._marker("hang").exists():
            time.sleep(0.05)

    def _boot(self, config: Config) -> None:
        with open(fake_dir() / "pids" / self.role, "a") as pids:
            pids.write(f"{os.getpid()}\n")
        if self._marker("crash").exists():
            raise RuntimeError("crash marker present")
        if self._marker("bootfail").exists():
            raise BootError("bootfail marker present", ExitCode.CONFIG)
        self._hang_while_marked()
        self._write_setting(config)

    def _write_setting(self, config: Config) -> None:
        (fake_dir() / f"setting-{self.role}").write_text(str(config.processing.batch_size))


class FakeSource(_Markers, SourceStage):
    """poller: emits batch_size consecutive numbers every poll_interval."""

    role = "poller"

    def open(self) -> None:
        self._boot(self.config)
        numbers = archived_numbers(fake_dir())
        self.next = (max(numbers) if numbers else 0) + 1

    def reconfigure(self, config: Config) -> None:
        super().reconfigure(config)
        self._write_setting(config)

    def produce(self) -> tuple[list[Message], float]:
        self._hang_while_marked()
        size = self.config.processing.batch_size
        items = list(range(self.next, self.next + size))
        self.next += size
        # Written before the put: emitted.txt may run ahead of the queue, never behind.
        (fake_dir() / "emitted.txt").write_text(str(items[-1]))
        return [numbers_batch(items)], self.config.processing.poll_interval


class FakeRelay(_Markers, TransformStage):
    """enricher: passes batches on, marked as enriched."""

    role = "enricher"

    def open(self) -> None:
        self._boot(self.config)

    def reconfigure(self, config: Config) -> None:
        super().reconfigure(config)
        self._write_setting(config)

    def handle(self, message: Message) -> list[Message]:
        self._hang_while_marked()
        assert isinstance(message, EventBatch)
        return [RowBatch(message.cursor, [{**event, "enriched": True} for event in message.events])]


class FakeSink(_Markers, TransformStage):
    """dbwriter: buffers numbers, appends them to archive.txt every few batches and on flush."""

    role = "dbwriter"
    BUFFERED_BATCHES = 3
    takes_waiting = 4  # as the real dbwriter, it takes batches that wait together

    def handle_many(self, messages: list[Message]) -> list[Message]:
        with open(fake_dir() / "taken-together.txt", "a") as taken:
            taken.write(f"{len(messages)}\n")
        return super().handle_many(messages)

    def open(self) -> None:
        self._boot(self.config)
        self.buffer: list[list[int]] = []
        self.archived = len(archived_numbers(fake_dir()))

    def reconfigure(self, config: Config) -> None:
        super().reconfigure(config)
        self._write_setting(config)

    def handle(self, message: Message) -> list[Message]:
        self._hang_while_marked()
        assert isinstance(message, RowBatch) and all(row["enriched"] is True for row in message.rows)
        self.buffer.append([row["n"] for row in message.rows])
        if len(self.buffer) >= self.BUFFERED_BATCHES:
            self._write()
        return []

    def flush(self) -> list[Message]:
        self._write()
        return []

    def _write(self) -> None:
        numbers = [n for batch in self.buffer for n in batch]
        with open(fake_dir() / "archive.txt", "a") as archive:
            archive.write("".join(f"{n}\n" for n in numbers))
        self.archived += len(numbers)
        self.buffer.clear()

    def stats(self) -> dict[str, float]:
        return {"archived": self.archived, "lag": 0.25}


class FakePrefetchingSink(FakeSink):
    """The same, its input read ahead on a thread (workers/prefetch.py), as the real dbwriter's."""

    prefetch = 2


class FakeUploader(_Markers, SourceStage):
    """uploader: nothing to upload; reports a constant backlog."""

    role = "uploader"

    def open(self) -> None:
        self._boot(self.config)

    def reconfigure(self, config: Config) -> None:
        super().reconfigure(config)
        self._write_setting(config)

    def produce(self) -> tuple[list[Message], float]:
        self._hang_while_marked()
        return [], 0.1

    def stats(self) -> dict[str, float]:
        return {"media_backlog": 2, "errors": 0}


REGISTRY: dict[str, type[Stage]] = {
    "poller": FakeSource, "enricher": FakeRelay, "dbwriter": FakeSink, "uploader": FakeUploader,
}
