"""A stage whose open() fails part way: the runner reports the real start-up error and
nothing else (close() after a failed open() raised AttributeError for what open() never
reached), and whatever open() did open is closed again."""
from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.pipeline.channels import StageChannels, control_pipe
from mxarchiverd.pipeline.heartbeat import HeartbeatBoard
from mxarchiverd.workers import STAGES
from mxarchiverd.workers.runner import ChildRunner, StopFlag
from tests.support.postgres import free_port
from tests.support.pipeline import write_config

CTX = multiprocessing.get_context("spawn")


def our_connections(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND application_name LIKE 'mxarchiverd%%'").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize(("role", "down"), [
    ("poller", "synapse"), ("poller", "archive"), ("enricher", "synapse"),
    ("dbwriter", "archive"), ("uploader", "archive"), ("uploader", "synapse"),
])
def test_a_failed_open_reports_only_the_real_error_and_closes_what_it_opened(
        role: str, down: str, fresh_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    synapse, archive = (nowhere, fresh_db) if down == "synapse" else (fresh_db, nowhere)
    config = write_config(tmp_path, synapse, archive, "daemon:\n  startup_timeout: 0s\n")
    slot = HeartbeatBoard(CTX, (role,)).slot(role)
    reader, _writer = control_pipe()
    runner = ChildRunner(role, STAGES[role], config, StageChannels(), slot, reader, StopFlag(), generation=1)
    with caplog.at_level(logging.INFO):
        assert runner.run() == ExitCode.UNAVAILABLE
    logged = "\n".join(f"{r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert f"{role} cannot start" in logged
    assert "AttributeError" not in logged and "error while closing" not in logged, logged
    assert our_connections(fresh_db) == 0
