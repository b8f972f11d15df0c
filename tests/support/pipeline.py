"""Run the poller -> enricher -> dbwriter stages in-process, for logic tests.

The process shell (supervisor, queues) is tested separately; here the stages
themselves meet real databases, and each message takes a round trip through the
queues' codec (pipeline/channels.py) between them.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from mxarchiverd.config import load_config
from mxarchiverd.config.model import Config
from mxarchiverd.archive.migrations import migrate
from mxarchiverd.pipeline.channels import decode, encode
from mxarchiverd.pipeline.messages import StageMessage, from_wire, to_wire
from mxarchiverd.sources.synapse_db.follower import SynapseFollower
from mxarchiverd.workers.dbwriter import DbWriter
from mxarchiverd.workers.enricher import Enricher
from mxarchiverd.workers.poller import Poller


def write_config(tmp_path: Path, synapse_dsn: str, archive_dsn: str, extra: str = "",
                 source_extra: str = "") -> Config:
    """A config file for the test; `extra` adds top-level sections, `source_extra` keys of source."""
    path = tmp_path / "mxarchiver.yaml"
    path.write_text(
        f"source:\n  synapse_db_url: '{synapse_dsn}'\n  statement_timeout: 10s\n{source_extra}"
        f"archive:\n  database_url: '{archive_dsn}'\n  storage_path: {tmp_path / 'media'}\n" + extra
    )
    return load_config(str(path), {})


class InProcessPipeline:
    def __init__(self, config: Config) -> None:
        self.config = config
        with psycopg.connect(config.archive_dsn or "", autocommit=True) as conn:
            migrate(conn)
        self.poller, self.enricher, self.writer = (cls(config, lambda: None) for cls in (Poller, Enricher, DbWriter))
        for stage in (self.poller, self.enricher, self.writer):
            stage.open()

    def close(self) -> None:
        for stage in (self.poller, self.enricher, self.writer):
            stage.close()

    def round(self) -> int:
        """One poller round pushed all the way through; returns the number of events moved."""
        messages, _ = self.poller.produce()
        moved = 0
        for message in messages:
            message = through_queue(message)
            moved += len(getattr(message, "events", ()))
            for row_batch in self.enricher.handle(message):
                self.writer.handle(through_queue(row_batch))
        return moved

    @property
    def follower(self) -> SynapseFollower:
        assert isinstance(self.poller.source, SynapseFollower)
        return self.poller.source

    def caught_up(self) -> bool:
        assert self.follower.synapse is not None
        bounds = self.follower.synapse.bounds(self.config.source.event_writers)
        registry_pending = self.follower.archive.execute(
            "SELECT count(*) FROM monitored_rooms WHERE NOT history_done AND enabled").fetchone()
        return (bounds.forward is None or self.follower.cursors["events"] >= bounds.forward) and registry_pending == (0,)

    def run_until_caught_up(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            moved = self.round()
            if not moved and self.caught_up():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("pipeline did not catch up")

    def reconfigure(self, config: Config) -> None:
        self.config = config
        for stage in (self.poller, self.enricher, self.writer):
            stage.reconfigure(config)


def through_queue(message: StageMessage) -> StageMessage:
    """The message as the next stage gets it: through the wire form and the codec."""
    return from_wire(decode(encode(to_wire(message))))


class BotPipeline(InProcessPipeline):
    """The same three stages with the bot (matrix_sync) source: caught up once the bot
    has no pagination left and a sync brought nothing new."""

    def caught_up(self) -> bool:
        jobs = self.poller.source.coverage.jobs
        return not jobs

    def run_until_caught_up(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while True:
            moved = self.round()
            quiet = quiet + 1 if not moved and self.caught_up() else 0
            if quiet >= 2:  # two rounds in a row: the sync after the last page brought nothing
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the bot pipeline did not catch up")

    def run_until(self, condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.round()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot pipeline did not reach: {what}")


def write_bot_config(tmp_path: Path, homeserver_url: str, user_id: str, password: str, archive_dsn: str,
                     extra: str = "", matrix_extra: str = "") -> Config:
    """A matrix_sync config: the bot's account, a state directory, short long-polls."""
    path = tmp_path / "mxarchiver-bot.yaml"
    path.write_text(
        f"source:\n  mode: matrix_sync\nmatrix:\n  homeserver_url: '{homeserver_url}'\n  username: '{user_id}'\n"
        f"  password: '{password}'\n  pickle_key: 'bot-pickle-key-for-tests-0123'\n"
        f"  state_dir: {tmp_path / 'bot-state'}\n{matrix_extra}"
        f"archive:\n  database_url: '{archive_dsn}'\n  storage_path: {tmp_path / 'bot-media'}\n"
        "processing:\n  sync_timeout: 200ms\n  poll_interval: 50ms\n" + extra)
    return load_config(str(path), {})


@contextmanager
def bot_pipeline(config: Config) -> Iterator[BotPipeline]:
    p = BotPipeline(config)
    try:
        yield p
    finally:
        p.close()


@contextmanager
def pipeline(config: Config) -> Iterator[InProcessPipeline]:
    p = InProcessPipeline(config)
    try:
        yield p
    finally:
        p.close()


def archived(archive_dsn: str, room_id: str | None = None) -> dict[str, dict[str, Any]]:
    """event_id -> row (as a dict) of the archive, optionally for one room."""
    with psycopg.connect(archive_dsn) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        if room_id:
            cur.execute("SELECT * FROM archived_messages WHERE room_id = %s", (room_id,))
        else:
            cur.execute("SELECT * FROM archived_messages")
        return {row["event_id"]: row for row in cur.fetchall()}


def run_uploader_until_idle(config: Config, timeout_s: float = 120.0) -> None:
    """Drive the uploader stage in-process until no media job is pending or running."""
    from mxarchiverd.workers.uploader import Uploader

    uploader = Uploader(config, lambda: None)
    uploader.open()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            _, delay = uploader.produce()
            if not uploader.running and uploader.bucket_ready and not _jobs_due(config):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("uploader did not finish its media jobs")
            time.sleep(min(delay, 0.05))  # the stage's own pacing, as the runner would wait
    finally:
        uploader.close()


def _jobs_due(config: Config) -> bool:
    with psycopg.connect(config.archive_dsn or "") as conn:
        # Jobs waiting out a retry delay count too: idle means nothing left to do at all.
        row = conn.execute("SELECT count(*) FROM media_jobs WHERE state IN ('pending', 'purge')").fetchone()
    return bool(row and row[0])
