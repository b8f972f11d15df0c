"""A source with history, a read-only archiver role, the full daemon running and caught up.

Shared by the latency, resources and media benchmarks. The daemon connects to
Synapse's database as its own read-only role, so pg_stat_statements can tell its
statements from the writer's (which plays Synapse).
"""
from __future__ import annotations

import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchlib import procs
from benchlib.daemon import CursorProbe, DaemonConfig, start_daemon, wait_for_position
from benchlib.schema import create_synapse_db
from benchlib.synthgen import Event, World, bulk_load
from tests.support.daemon import Daemon
from tests.support.postgres import PgServer

TS_START = 1_700_000_000_000
MIB = 1024 * 1024


@dataclass
class Live:
    server: PgServer
    synapse_dsn: str  # as Synapse (superuser), for the writer
    reader_dsn: str  # as the archiver's read-only role
    reader_role: str
    archive_dsn: str
    world: World
    daemon: Daemon
    config: DaemonConfig
    bound: int  # last stream ordering of the history


def create_reader_role(stack: procs.Cleanup, server: PgServer, synapse_dsn: str) -> tuple[str, str]:
    """A read-only login role on Synapse's database (what the README asks operators for)."""
    role = f"mxa_reader_{secrets.token_hex(3)}"
    with server.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    with psycopg.connect(synapse_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))

    def drop() -> None:
        server.drop_database(synapse_dsn)  # the grants live there
        with server.admin_connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

    stack.callback(drop, label=f"drop role {role}")
    return role, make_conninfo(synapse_dsn, user=role)


Waiter = Callable[[Daemon, CursorProbe, int, float], object]


def start_live(stack: procs.Cleanup, server: PgServer, workdir: Path, *, history: int = 20_000, rooms: int = 20,
               seed: int = 6, media: bool = True, wait_s: float = 600.0, waiter: Waiter = wait_for_position,
               remote: Callable[[str], str] = lambda dsn: dsn, env: dict[str, str] | None = None,
               **config: object) -> Live:
    """Source with `history` events, reader role, archive, `mxarchiverd run`; returns once caught up.

    `waiter(daemon, probe, bound, timeout)` is what waits for the catch-up (a
    benchmark may wrap it to measure the backfill). `remote` maps the archive's DSN
    to the one the daemon uses (a delay proxy); `env` is for the daemon's processes
    (benchlib/baseline.py). Everything else reads the archive directly.
    """
    synapse_dsn = create_synapse_db(server)
    world = World(seed=seed, media=media)
    setup = world.create_rooms(rooms, TS_START)
    bound = bulk_load(synapse_dsn, world, itertools.chain(setup, world.stream(max(0, history - len(setup)),
                                                                               TS_START)), progress_every=0)
    role, reader_dsn = create_reader_role(stack, server, synapse_dsn)
    archive_dsn = server.create_database("archive")
    daemon_config = DaemonConfig(reader_dsn, remote(archive_dsn), workdir / "daemon", **config)  # type: ignore[arg-type]
    daemon = start_daemon(stack, daemon_config.daemon(workdir / "daemon.log", env=env))
    probe = CursorProbe(archive_dsn)
    try:
        waiter(daemon, probe, bound, wait_s)
    finally:
        probe.close()
    return Live(server, synapse_dsn, reader_dsn, role, archive_dsn, world, daemon, daemon_config, bound)


@dataclass
class CursorWatcher:
    """A thread that polls the archive's 'events' cursor every `interval_s` and keeps every change.

    The cursor moves in the same transaction as the rows it covers, so the first
    poll that sees position >= p is (within one interval) when event p became
    durable in the archive.
    """

    archive_dsn: str
    interval_s: float = 0.005
    changes: list[tuple[float, int]] = field(default_factory=list)  # (time.time(), position)
    polls: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cursor-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def position(self) -> int:
        return self.changes[-1][1] if self.changes else 0

    def _run(self) -> None:
        probe = CursorProbe(self.archive_dsn)
        last = None
        try:
            while not self._stop.is_set():
                position = probe.position()
                self.polls += 1
                if position is not None and position != last:
                    self.changes.append((time.time(), position))
                    last = position
                self._stop.wait(self.interval_s)
        finally:
            probe.close()

    def arrival_times(self, orderings: list[int]) -> list[float | None]:
        """For each stream ordering (any order), when the cursor was first seen at or past it."""
        order = sorted(range(len(orderings)), key=lambda i: orderings[i])
        result: list[float | None] = [None] * len(orderings)
        changes = list(self.changes)
        j = 0
        for i in order:
            while j < len(changes) and changes[j][1] < orderings[i]:
                j += 1
            if j < len(changes):
                result[i] = changes[j][0]
        return result


# --- media files in a fake media store -------------------------------------------------

def write_media_file(store: Path, media_id: str, size: int) -> Path:
    """A file at Synapse's local path (local_content/AB/CD/REST), `size` bytes, distinct per media id."""
    path = store / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, MIB))
    with path.open("wb") as f:
        f.write(media_id.encode()[:size])
        left = size - min(size, len(media_id))
        while left > 0:
            chunk = block[:left]
            f.write(chunk)
            left -= len(chunk)
    return path


def media_events(world: World, store: Path, sizes: list[int], ts: int) -> list[Event]:
    """m.file events whose files exist in the media store (with their local_media_repository rows)."""
    events = []
    for size in sizes:
        event = world.media_message(size, ts)
        write_media_file(store, event.media[0][0], size)
        events.append(event)
    return events


class ArchivePolling:
    """A thread that polls the archive on its own connection every `interval_s`, from the
    start of a `with` block to its end; subclasses say what one poll reads (poll)."""

    thread_name = "archive-poller"

    def __init__(self, archive_dsn: str, interval_s: float) -> None:
        self.dsn, self.interval_s = archive_dsn, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, prepare_threshold=0) as conn:
            while not self._stop.is_set():
                self.poll(conn)
                self._stop.wait(self.interval_s)

    def poll(self, conn: psycopg.Connection) -> None:
        raise NotImplementedError


class MediaDoneWatcher(ArchivePolling):
    """A thread that records when each media job ('file' kind) is first seen done, polling every 20 ms.

    Also keeps media_jobs.updated_at of the done transition (the uploader's
    transaction time, a few ms before its commit) as a cross-check.
    """

    thread_name = "media-watcher"

    def __init__(self, archive_dsn: str, interval_s: float = 0.02) -> None:
        super().__init__(archive_dsn, interval_s)
        self.seen: dict[str, float] = {}
        self.updated_at: dict[str, float] = {}
        self.failed: dict[str, str] = {}

    def poll(self, conn: psycopg.Connection) -> None:
        rows = conn.execute("""SELECT event_id, state, extract(epoch FROM updated_at)::float8, last_error
                                 FROM media_jobs WHERE media_kind = 'file'
                                  AND state IN ('done', 'dead', 'refused')""").fetchall()
        now = time.time()
        for event_id, state, updated, error in rows:
            if state == "done" and event_id not in self.seen:
                self.seen[event_id], self.updated_at[event_id] = now, updated
            elif state != "done":
                self.failed[event_id] = f"{state}: {error}"

    def wait(self, event_ids: list[str], timeout_s: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        while not all(e in self.seen for e in event_ids):
            bad = [f"{e} {self.failed[e]}" for e in event_ids if e in self.failed]
            if bad:
                raise RuntimeError("media jobs failed: " + "; ".join(bad))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(e in self.seen for e in event_ids)} of {len(event_ids)} media files "
                                   f"stored after {timeout_s:.0f}s")
            time.sleep(0.01)
        return {e: self.seen[e] for e in event_ids}
