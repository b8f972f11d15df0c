"""The child shell (workers/runner.py) run in-process with real queues and pipes.

The fake stages write to MXARCHIVERD_FAKE_DIR (tests/support/fake_stages.py).
"""
from __future__ import annotations

import itertools
import json
import multiprocessing
from collections.abc import Iterator
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import pytest

from mxarchiverd.config import Config, ProcessingConfig
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.pipeline.channels import (
    END_OF_STREAM, PipelineQueues, Reconfigure, StageChannels, Stop, control_pipe, decode, encode,
    send_control,
)
from mxarchiverd.pipeline.heartbeat import HeartbeatBoard, HeartbeatSlot
from mxarchiverd.workers import STAGES
from mxarchiverd.workers.runner import ChildRunner, StopFlag, load_stage_class, stage_registry
from mxarchiverd.pipeline.messages import EventBatch, RowBatch, from_wire, to_wire
from mxarchiverd.workers.stage import SourceStage
from tests.support.fake_stages import archived_numbers, numbers_batch
from tests.support.waiting import wait_for

FAKES = Path(__file__).resolve().parents[1] / "support" / "fake_stages.py"
PIPELINE = ("poller", "enricher", "dbwriter")
CTX = multiprocessing.get_context("spawn")


@pytest.fixture(autouse=True)
def fake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pids").mkdir()
    monkeypatch.setenv("MXARCHIVERD_FAKE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def queues() -> Iterator[PipelineQueues]:
    queues = PipelineQueues(CTX, PIPELINE, maxsize=4)
    yield queues
    queues.close()


class Harness:
    def __init__(self, role: str, cls: str, channels: StageChannels, *, ppids: Iterator[int] | None = None) -> None:
        self.slot: HeartbeatSlot = HeartbeatBoard(CTX, (role,)).slot(role)
        self.reader, self.writer = control_pipe()
        self.stop = StopFlag()
        parents = ppids or itertools.repeat(1)
        self.runner = ChildRunner(role, f"{FAKES}:{cls}", Config(), channels, self.slot, self.reader,
                                  self.stop, generation=1, getppid=lambda: next(parents))

    def send(self, message: Stop | Reconfigure) -> None:
        assert send_control(self.writer, message)


def inbox(channels: StageChannels) -> Queue[bytes]:
    assert channels.inbox is not None
    return channels.inbox


def outbox(channels: StageChannels) -> Queue[bytes]:
    assert channels.outbox is not None
    return channels.outbox


def drain(q: Queue[bytes]) -> list[dict[str, Any]]:
    out = []
    while True:
        message = decode(q.get(timeout=5))
        out.append(message)
        if message["kind"] == "end":
            return out


class TestProgress:
    def test_a_message_is_held_while_handled_and_counts_as_progress_once_done(self, queues: PipelineQueues) -> None:
        channels = queues.for_role("enricher")
        harness = Harness("enricher", "FakeRelay", channels)
        seen: list[tuple[bool, int]] = []
        assert harness.runner._boot() is None
        stage = harness.runner.stage
        assert stage is not None
        handle = stage.handle

        def watched(message: Any) -> Any:
            seen.append((harness.slot.pulse.holding, harness.slot.pulse.progress))
            stage.beat()  # the stage's own proof of progress during long work
            return handle(message)

        stage.handle = watched  # type: ignore[method-assign]
        inbox(channels).put(encode(to_wire(numbers_batch([1]))))
        while not seen:
            harness.runner._transform_turn()
        pulse = harness.slot.pulse
        # its own beat, the message handled, the batch passed on
        assert seen == [(True, 0)] and not pulse.holding and pulse.progress == 3


class TestTransform:
    def test_end_of_stream_flushes_and_is_passed_on(self, queues: PipelineQueues) -> None:
        channels = queues.for_role("enricher")
        inbox(channels).put(encode(to_wire(numbers_batch([1, 2]))))
        inbox(channels).put(END_OF_STREAM)
        harness = Harness("enricher", "FakeRelay", channels)
        assert harness.runner.run() == ExitCode.OK
        relayed, end = drain(outbox(channels))
        assert [row["n"] for row in from_wire(relayed).rows] == [1, 2] and end == {"kind": "end"}  # type: ignore[union-attr]
        assert harness.slot.ready and harness.slot.last_beat > 0 and harness.slot.progress == 2

    @pytest.mark.parametrize("sink", ["FakeSink", "FakePrefetchingSink"])
    def test_sink_flushes_its_buffer_at_the_end(self, queues: PipelineQueues, fake_dir: Path, sink: str) -> None:
        channels = queues.for_role("dbwriter")
        for numbers in ([1, 2], [3], [4, 5, 6]):
            relayed = numbers_batch(numbers)
            inbox(channels).put(encode(to_wire(RowBatch(relayed.cursor,
                                                        [{**e, "enriched": True} for e in relayed.events]))))
        inbox(channels).put(END_OF_STREAM)
        harness = Harness("dbwriter", sink, channels)
        assert harness.runner.run() == ExitCode.OK
        assert archived_numbers(fake_dir) == [1, 2, 3, 4, 5, 6], "everything, in order, before the end"
        assert harness.slot.stats()["archived"] == 6

    def test_batches_waiting_together_are_handed_over_together_and_the_end_after_them(
            self, queues: PipelineQueues, fake_dir: Path) -> None:
        channels = queues.for_role("dbwriter")
        for numbers in ([1, 2], [3], [4, 5]):  # with the end marker: as many as the queue holds
            batch = numbers_batch(numbers)
            inbox(channels).put(encode(to_wire(RowBatch(batch.cursor, [{**e, "enriched": True} for e in batch.events]))))
        inbox(channels).put(END_OF_STREAM)
        # The queue's feeder thread has written everything into the pipe: all of it waits.
        wait_for(lambda: not inbox(channels)._buffer, 10, "the queue's feeder thread")  # type: ignore[attr-defined]
        harness = Harness("dbwriter", "FakeSink", channels)
        assert harness.runner.run() == ExitCode.OK
        assert archived_numbers(fake_dir) == [1, 2, 3, 4, 5]
        # One turn: the first batch and the two waiting behind it, handed over together;
        # the end marker behind them ends the stream once they are handled.
        assert (fake_dir / "taken-together.txt").read_text().split() == ["3"]
        assert harness.slot.progress == 3

    def test_sigterm_flushes_without_waiting_for_upstream(self, queues: PipelineQueues, fake_dir: Path) -> None:
        harness = Harness("dbwriter", "FakeSink", queues.for_role("dbwriter"))
        harness.stop.set = True
        assert harness.runner.run() == ExitCode.OK
        assert (fake_dir / "archive.txt").read_text() == ""


class TestSource:
    def test_stop_message_ends_the_stream(self, queues: PipelineQueues) -> None:
        channels = queues.for_role("poller")
        harness = Harness("poller", "FakeSource", channels)
        harness.send(Stop())
        assert harness.runner.run() == ExitCode.OK
        assert drain(outbox(channels)) == [{"kind": "end"}]

    def test_reconfigure_reaches_the_stage_and_is_acknowledged(self, queues: PipelineQueues, fake_dir: Path) -> None:
        harness = Harness("poller", "FakeSource", queues.for_role("poller"))
        harness.send(Reconfigure(Config(processing=ProcessingConfig(batch_size=9)), generation=2))
        harness.send(Stop())
        assert harness.runner.run() == ExitCode.OK
        assert (fake_dir / "setting-poller").read_text() == "9"
        assert harness.slot.generation == 2

    def test_produces_batches_downstream(self, queues: PipelineQueues, fake_dir: Path) -> None:
        channels = queues.for_role("poller")
        # A parent that "dies" after a few turns ends the loop.
        harness = Harness("poller", "FakeSource", channels, ppids=iter([1, 1, 1, 2]))
        assert harness.runner.run() == ExitCode.CRASH
        batch = from_wire(decode(outbox(channels).get(timeout=5)))
        assert isinstance(batch, EventBatch) and [e["n"] for e in batch.events][:3] == [1, 2, 3]
        assert len(batch.events) == Config().processing.batch_size

    def test_sigterm_with_a_full_queue_gives_up_instead_of_hanging(self) -> None:
        small = PipelineQueues(CTX, PIPELINE, maxsize=1)
        channels = small.for_role("poller")
        outbox(channels).put(b"x")
        harness = Harness("poller", "FakeSource", channels)
        harness.stop.set = True
        assert harness.runner.run() == ExitCode.CRASH
        small.close()

    def test_a_closed_control_pipe_means_the_supervisor_is_gone(self, queues: PipelineQueues) -> None:
        harness = Harness("uploader", "FakeUploader", StageChannels())
        harness.writer.close()
        assert harness.runner.run() == ExitCode.CRASH


class TestBoot:
    def test_boot_error_exits_with_its_code(self, fake_dir: Path) -> None:
        (fake_dir / "bootfail-uploader").touch()
        harness = Harness("uploader", "FakeUploader", StageChannels())
        assert harness.runner.run() == ExitCode.CONFIG
        assert not harness.slot.ready

    def test_other_exceptions_are_crashes(self, fake_dir: Path) -> None:
        (fake_dir / "crash-uploader").touch()
        assert Harness("uploader", "FakeUploader", StageChannels()).runner.run() == ExitCode.CRASH

    def test_exceptions_carrying_an_exit_code_are_boot_errors(self, fake_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
        from mxarchiverd.db import DatabaseUnavailable
        from mxarchiverd.workers import runner

        def unreachable(self: object) -> None:
            raise DatabaseUnavailable("archive database unreachable")
        stage = load_stage_class(f"{FAKES}:FakeUploader")
        monkeypatch.setattr(stage, "open", unreachable)
        monkeypatch.setattr(runner, "load_stage_class", lambda spec: stage)
        assert Harness("uploader", "FakeUploader", StageChannels()).runner.run() == ExitCode.UNAVAILABLE

    def test_an_unknown_class_is_a_crash(self) -> None:
        harness = Harness("uploader", "NoSuchStage", StageChannels())
        assert harness.runner.run() == ExitCode.CRASH


class TestRegistry:
    def test_default_is_the_package_registry(self) -> None:
        assert stage_registry({}) == STAGES

    def test_test_hook_replaces_it(self) -> None:
        hook = {"poller": "a:B", "enricher": "a:C", "dbwriter": "a:D", "solo": "x.py:E"}
        assert stage_registry({"MXARCHIVERD_STAGES": json.dumps(hook)}) == hook

    @pytest.mark.parametrize("hook", ['["a:B"]', '{"poller": "no-colon"}', '{"poller": "a:B"}'])
    def test_test_hook_is_validated(self, hook: str) -> None:
        with pytest.raises(ValueError):
            stage_registry({"MXARCHIVERD_STAGES": hook})

    def test_load_by_file_path_or_module(self) -> None:
        assert issubclass(load_stage_class(f"{FAKES}:FakeSource"), SourceStage)
        with pytest.raises(TypeError):
            load_stage_class("mxarchiverd.config:Config")
