"""A pipeline stage fenced off by a takeover (daemon.ha) exits FENCED, quietly; the runner
hands the stage the fencing token it was started under."""
from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import pytest

from mxarchiverd.archive.leadership import Fence
from mxarchiverd.config import Config
from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.pipeline.channels import StageChannels, control_pipe
from mxarchiverd.pipeline.heartbeat import HeartbeatBoard
from mxarchiverd.workers.runner import ChildRunner, StopFlag

CTX = multiprocessing.get_context("spawn")
STAGE = '''
from mxarchiverd.archive.leadership import Fenced
from mxarchiverd.workers.stage import SourceStage

class FencedSource(SourceStage):
    role = "poller"
    def open(self):
        assert self.fence is not None and self.fence.token == 7
    def produce(self):
        raise Fenced(self.fence.token)
'''


def test_a_fenced_stage_exits_fenced_without_a_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    module = tmp_path / "fenced_stage.py"
    module.write_text(STAGE)
    slot = HeartbeatBoard(CTX, ("poller",)).slot("poller")
    reader, writer = control_pipe()
    runner = ChildRunner("poller", f"{module}:FencedSource", Config(), StageChannels(), slot, reader, StopFlag(),
                         generation=1, getppid=lambda: 1, fence=Fence(7, 5.0))
    with caplog.at_level(logging.WARNING):
        assert runner.run() == ExitCode.FENCED
    assert "fencing token 7 is no longer current" in caplog.text
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    writer.close()
