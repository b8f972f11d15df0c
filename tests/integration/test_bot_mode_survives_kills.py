"""The real daemon in bot mode: kill -9 of the sync stage between a /sync answer and its
commit loses and duplicates nothing, and restarts never make a new device."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.daemon import Daemon, Entry
from tests.support.nio_driver import NioDriver, list_devices, register_bot, unique
from tests.support.synapse import SynapseServer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.synapse]


def archived_ids(dsn: str, room_id: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM archived_messages WHERE room_id = %s", (room_id,))]


@pytest.fixture
def bot_daemon(synapse: SynapseServer, fresh_db: str, tmp_path: Path,
               nio_alice: NioDriver) -> Iterator[tuple[Daemon, str, str]]:
    bot_id, password = register_bot(synapse, unique("archiver"))
    room = nio_alice.create_room(name="kills", invite=(bot_id,))
    daemon = Daemon(tmp_path, entry=Entry.MODULE, notify=True, watchdog_usec=5_000_000)
    daemon.write_config(
        f"source:\n  mode: matrix_sync\nmatrix:\n  homeserver_url: '{synapse.base_url}'\n  username: '{bot_id}'\n"
        f"  password: '{password}'\n  pickle_key: 'kill-test-pickle-key-0123456'\n  state_dir: {tmp_path / 'state'}\n"
        f"rooms:\n  - room_id: '{room}'\narchive:\n  database_url: '{fresh_db}'\n  storage_path: {tmp_path / 'media'}\n"
        "processing:\n  sync_timeout: 500ms\n  poll_interval: 100ms\n"
        "daemon:\n  restart_backoff_initial: 100ms\n  restart_backoff_max: 1s\n  restart_limit: 40\n"
        "  startup_timeout: 20s\n  stop_timeout: 20s\n")
    with daemon:
        daemon.start().wait_ready(60)
        first = nio_alice.send_text(room, "the bot is here")
        wait_for(lambda: first in archived_ids(fresh_db, room), 60, f"the first message archived\n{daemon.tail()}")
        yield daemon, room, bot_id


def dbwriter_waits_for_a_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mxarchiverd dbwriter'"
                           " AND wait_event_type = 'Lock'").fetchone()
    return bool(row and row[0])


def test_kill_9_between_a_sync_and_its_commit_loses_and_duplicates_nothing(
        bot_daemon: tuple[Daemon, str, str], nio_alice: NioDriver, fresh_db: str) -> None:
    daemon, room, bot_id = bot_daemon
    with psycopg.connect(fresh_db) as holder:
        # The sync's batch cannot commit while its cursor row is locked: the window between
        # the /sync answer and its commit, held open.
        holder.execute("SELECT * FROM sync_state WHERE account = %s FOR UPDATE", (bot_id,))
        sent = nio_alice.send_many(room, 5, prefix="in flight")
        wait_for(lambda: dbwriter_waits_for_a_lock(fresh_db), 30, "the dbwriter to wait for the sync's commit")
        poller = daemon.role_pids("poller")[0]
        os.kill(poller, signal.SIGKILL)
        daemon.wait_role("poller", 30, other_than=poller)
        holder.rollback()
    later = nio_alice.send_text(room, "after the kill")
    wait_for(lambda: set(sent + [later]) <= set(archived_ids(fresh_db, room)), 60,
             f"everything archived after the kill\n{daemon.tail()}")
    ids = archived_ids(fresh_db, room)
    assert len(ids) == len(set(ids))
    assert daemon.stop(30) == 0, daemon.tail()


def test_ten_restarts_of_the_sync_stage_keep_one_device(
        bot_daemon: tuple[Daemon, str, str], nio_alice: NioDriver, fresh_db: str, synapse: SynapseServer,
        tmp_path: Path) -> None:
    daemon, room, bot_id = bot_daemon
    for i in range(10):
        poller = daemon.role_pids("poller")[0]
        os.kill(poller, signal.SIGKILL)
        daemon.wait_role("poller", 30, other_than=poller)
        event = nio_alice.send_text(room, f"after restart {i}")
        wait_for(lambda: event in archived_ids(fresh_db, room), 60, f"archiving after restart {i}\n{daemon.tail()}")
    admin = NioDriver.register(synapse, unique("admin"), tmp_path / "admin", admin=True)
    try:
        assert len(list_devices(synapse, admin, bot_id)) == 1
    finally:
        admin.close()
    assert "Traceback" not in daemon.log(), daemon.tail()
