"""The real daemon (`mxarchiverd run`) against Synapse's real schema while events keep arriving:
kill -9 of every role, and of the dbwriter between its writes and its commit, loses and
duplicates nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_supervisor import NotifyListener, alive, process_group
from tests.support.synth import add_room, insert_event, set_position
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]
ROOMS = [f"!daemon{i}:synth.test" for i in range(3)]
DEV_COMMAND = (sys.executable, "-m", "mxarchiverd")


class Writer(threading.Thread):
    """Commits text events into the Synapse-schema database, like a busy homeserver."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.stopped = threading.Event()
        self.count = 0

    def run(self) -> None:
        while not self.stopped.wait(0.01):  # about 100 events/s
            self.write_one()

    def write_one(self) -> None:
        room = ROOMS[self.count % len(ROOMS)]
        _, position = insert_event(self.conn, room, "m.room.message", {"msgtype": "m.text", "body": f"n{self.count}"})
        set_position(self.conn, position)
        self.count += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        self.conn.close()


class RealDaemon:
    """`mxarchiverd run` as systemd starts it; `command`, `cwd` and `environ` let a test run
    another install of it (test_installed_wheel.py), `source_extra`/`extra` add config."""

    def __init__(self, workdir: Path, source: str, archive: str, *, command: Sequence[str] = DEV_COMMAND,
                 cwd: Path = REPO, environ: Mapping[str, str] = os.environ, source_extra: str = "",
                 extra: str = "") -> None:
        self.socket_dir = Path(tempfile.mkdtemp(prefix="mxd-"))
        self.notify = NotifyListener(self.socket_dir / "notify.sock")
        self.config = workdir / "config.yaml"
        self.config.write_text(
            f"source:\n  synapse_db_url: '{source}'\n{source_extra}archive:\n  database_url: '{archive}'\n"
            f"  storage_path: {workdir / 'media'}\nprocessing:\n  batch_size: 50\n  poll_interval: 100ms\n"
            "daemon:\n  restart_backoff_initial: 100ms\n  restart_backoff_max: 1s\n  restart_limit: 30\n"
            f"  startup_timeout: 20s\n  stop_timeout: 20s\n{extra}")
        self.log = workdir / "daemon.log"
        env = dict(environ, NOTIFY_SOCKET=str(self.notify.path), WATCHDOG_USEC="2000000")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*command, "--config", str(self.config), "run"],
                                         env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)

    def role_pids(self, role: str) -> list[int]:
        title = f"mxarchiverd: {role}".encode()
        found = []
        for pid in process_group(self.proc.pid):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title):
                    found.append(pid)
            except OSError:
                continue
        return found

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def cleanup(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.notify.close()


@pytest.fixture
def source(synapse_schema_db: str) -> str:
    with psycopg.connect(synapse_schema_db, autocommit=True) as conn:
        for room in ROOMS:
            add_room(conn, room)
    return synapse_schema_db


@pytest.fixture
def daemon(source: str, fresh_db: str, tmp_path: Path) -> Iterator[RealDaemon]:
    d = RealDaemon(tmp_path, source, fresh_db)
    try:
        d.notify.wait_for("READY=1", timeout=60)
        yield d
    finally:
        d.cleanup()


def source_ids(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT event_id FROM events")}


def archive_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM archived_messages")]


def archived_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT count(*) FROM archived_messages").fetchone()[0])


def test_kill_9_of_each_role_loses_and_duplicates_nothing(daemon: RealDaemon, source: str, fresh_db: str) -> None:
    writer = Writer(source)
    writer.start()
    try:
        for role in ("poller", "enricher", "dbwriter", "uploader"):
            old = wait_for(lambda: daemon.role_pids(role), 30, f"a running {role}")[0]
            before = archived_count(fresh_db)
            os.kill(old, signal.SIGKILL)
            wait_for(lambda: [p for p in daemon.role_pids(role) if p != old], 30, f"{role} restarted")
            wait_for(lambda: archived_count(fresh_db) > before + 20, 60, f"archiving to resume after killing {role}")
        watchdog_before = len(daemon.notify.watchdog_times())
        wait_for(lambda: len(daemon.notify.watchdog_times()) > watchdog_before + 1, 10, "watchdog pings to continue")
    finally:
        writer.stop()
    expected = source_ids(source)
    wait_for(lambda: set(archive_ids(fresh_db)) >= expected, 60, "the archive to catch up")
    ids = archive_ids(fresh_db)
    assert len(ids) == len(set(ids)) == len(expected) == writer.count
    stopping = len(daemon.notify.snapshot())
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0, daemon.output()
    assert daemon.notify.find("STOPPING=1", stopping) is not None


def test_kill_9_of_the_dbwriter_between_its_writes_and_its_commit(daemon: RealDaemon, source: str,
                                                                  fresh_db: str) -> None:
    writer = Writer(source)
    for _ in range(10):
        writer.write_one()
    wait_for(lambda: archived_count(fresh_db) == 10, 30, "the first events")
    # Hold the cursor row: the dbwriter's next transaction inserts its rows, then
    # blocks on the cursor update, before COMMIT.
    blocker = psycopg.connect(fresh_db)
    blocker.execute("SELECT 1 FROM archive_cursors WHERE stream = 'events' FOR UPDATE")
    for _ in range(10):
        writer.write_one()
    with psycopg.connect(fresh_db, autocommit=True) as watch:
        def dbwriter_waiting_on_lock() -> bool:
            row = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                " AND application_name = 'mxarchiverd dbwriter'").fetchone()
            return bool(row and row[0])
        wait_for(dbwriter_waiting_on_lock, 30, "the dbwriter to block inside its transaction")
    os.kill(daemon.role_pids("dbwriter")[0], signal.SIGKILL)
    blocker.rollback()
    blocker.close()
    wait_for(lambda: archived_count(fresh_db) == 20, 60, "the batch to be written again after the restart")
    ids = archive_ids(fresh_db)
    assert len(ids) == len(set(ids)) and set(ids) == source_ids(source)
    writer.conn.close()
    assert all(alive(pid) for pid in daemon.role_pids("poller"))


def test_sighup_adds_a_room_and_a_broken_file_keeps_the_old_config(source: str, fresh_db: str, tmp_path: Path) -> None:
    with psycopg.connect(source, autocommit=True) as conn:
        before, _ = insert_event(conn, ROOMS[1], "m.room.message", {"msgtype": "m.text", "body": "history"})
        _, position = insert_event(conn, ROOMS[0], "m.room.message", {"msgtype": "m.text", "body": "first"})
        set_position(conn, position)
    d = RealDaemon(tmp_path, source, fresh_db)
    original = d.config.read_text()
    d.config.write_text(original + f"rooms:\n  - room_id: '{ROOMS[0]}'\n")
    try:
        ready = d.notify.wait_for("READY=1", timeout=60)
        wait_for(lambda: archived_count(fresh_db) == 1, 30, "the one monitored room")
        d.config.write_text(original + f"rooms:\n  - room_id: '{ROOMS[0]}'\n  - room_id: '{ROOMS[1]}'\n")
        d.proc.send_signal(signal.SIGHUP)
        reloading = d.notify.wait_for("RELOADING=1", after=ready + 1)
        d.notify.wait_for("READY=1", after=reloading)
        wait_for(lambda: before in archive_ids(fresh_db), 30, "the added room's history after SIGHUP")
        d.config.write_text("rooms: [\n")
        d.proc.send_signal(signal.SIGHUP)
        again = d.notify.wait_for("RELOADING=1", after=reloading + 1)
        d.notify.wait_for("READY=1", after=again)
        status = wait_for(lambda: [t for _, t in d.notify.snapshot()[again:] if "reload failed" in t], 10,
                          "STATUS naming the reload problem")
        assert "not valid YAML" in status[-1]
        with psycopg.connect(source, autocommit=True) as conn:
            later, position = insert_event(conn, ROOMS[1], "m.room.message", {"msgtype": "m.text", "body": "still on"})
            set_position(conn, position)
        wait_for(lambda: later in archive_ids(fresh_db), 30, "archiving on the old config")
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0, d.output()
    finally:
        d.cleanup()
