"""Two real daemons on one archive (daemon.ha): one leads, the other stands by and takes
over when the leader dies or freezes; the archive ends up equal to the source, and a
frozen old leader, resumed, writes nothing more."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.daemon import Daemon, Entry
from tests.support.traffic import LiveTraffic, archive_ids, archived_count, source_ids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOMS = [f"!ha{i}:synth.test" for i in range(3)]
LEASE_S = 4
# Asserted only as a generous bound (the machine is shared); the measured time is printed.
TAKEOVER_BOUND_S = 30


def ha_daemon(workdir: Path, source: str, archive: str, storage: Path, holder: str) -> Daemon:
    daemon = Daemon(workdir, entry=Entry.MODULE, notify=True, watchdog_usec=4_000_000)
    daemon.write_config(
        f"source:\n  synapse_db_url: '{source}'\narchive:\n  database_url: '{archive}'\n  storage_path: {storage}\n"
        "processing:\n  batch_size: 50\n  poll_interval: 100ms\n"
        "daemon:\n  restart_backoff_initial: 100ms\n  restart_backoff_max: 1s\n  restart_limit: 30\n"
        "  startup_timeout: 30s\n  stop_timeout: 20s\n"
        f"  ha:\n    enabled: true\n    lease_duration: {LEASE_S}s\n    renew_interval: 1s\n    holder: {holder}\n")
    return daemon


def lease_row(archive: str) -> tuple[str | None, int, bool]:
    with psycopg.connect(archive, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute("SELECT holder, token, expires_at > now() FROM archive_leadership").fetchone()
    assert row is not None
    return row[0], int(row[1]), bool(row[2])


def leads(archive: str, holder: str) -> tuple[str, int] | None:
    who, token, valid = lease_row(archive)
    return (holder, token) if who == holder and valid else None


def last_status(daemon: Daemon) -> str:
    assert daemon.notify is not None
    for datagram in reversed(daemon.notify.statuses()):
        for line in datagram.split("\n"):
            if line.startswith("STATUS="):
                return line.removeprefix("STATUS=")
    return ""


@pytest.fixture
def pair(synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    storage = tmp_path / "media"
    a = ha_daemon(tmp_path / "a", synapse_schema_db, fresh_db, storage, "host-a")
    b = ha_daemon(tmp_path / "b", synapse_schema_db, fresh_db, storage, "host-b")
    with a, b:
        a.start().wait_ready(90)
        wait_for(lambda: leads(fresh_db, "host-a"), 30, "host-a to take the lease")
        b.start().wait_ready(90)
        wait_for(lambda: last_status(b).startswith("standby"), 30, "host-b's STATUS= to say standby")
        yield a, b


def assert_archive_equals_source(source: str, archive: str, written: int) -> None:
    expected = source_ids(source)
    wait_for(lambda: set(archive_ids(archive)) >= expected, 90, "the archive to catch up with the source")
    ids = archive_ids(archive)
    assert len(ids) == len(set(ids)), "duplicates in the archive"
    assert set(ids) == expected and len(expected) == written


def test_a_standby_takes_over_when_the_leaders_supervisor_is_killed(
        pair: tuple[Daemon, Daemon], synapse_schema_db: str, fresh_db: str) -> None:
    a, b = pair
    assert b.role_pids("dbwriter") == [] and b.role_pids("uploader"), "a standby runs the uploader only"
    assert b.notify is not None
    pings = len(b.notify.watchdog_times())
    traffic = LiveTraffic(synapse_schema_db, ROOMS)
    traffic.start()
    try:
        wait_for(lambda: archived_count(fresh_db) > 30, 60, "host-a to archive live traffic")
        wait_for(lambda: len(b.notify.watchdog_times()) > pings + 2, 20, "the standby's watchdog pings")
        _, old_token = lease_row(fresh_db)[:2]
        started = time.monotonic()
        os.kill(a.pid, signal.SIGKILL)
        _, token = wait_for(lambda: leads(fresh_db, "host-b"), TAKEOVER_BOUND_S, "host-b to take the lease")
        wait_for(lambda: b.role_pids("dbwriter"), TAKEOVER_BOUND_S, "host-b's pipeline")
        took = time.monotonic() - started
        print(f"\ntakeover after kill -9 of the leader's supervisor: {took:.2f}s (token {old_token} -> {token})")
        assert token > old_token and took < TAKEOVER_BOUND_S
        wait_for(lambda: [p for p in a.pids() if p != a.pid] == [], 15, "the killed leader's stages to exit")
        before = archived_count(fresh_db)
        wait_for(lambda: archived_count(fresh_db) > before + 30, 60, "host-b to archive live traffic")
        wait_for(lambda: last_status(b).startswith("running"), 20, "host-b's STATUS= to say running")
    finally:
        traffic.stop()
    assert_archive_equals_source(synapse_schema_db, fresh_db, traffic.count)


AUDIT_SQL = """
CREATE TABLE ha_audit (id BIGSERIAL PRIMARY KEY, token TEXT, at TIMESTAMPTZ DEFAULT clock_timestamp());
CREATE FUNCTION ha_audit_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ha_audit (token) VALUES (current_setting('mxarchiverd.fence', true));
  RETURN NULL;
END $$;
CREATE TRIGGER ha_audit_cursor AFTER INSERT OR UPDATE ON archive_cursors
  FOR EACH STATEMENT EXECUTE FUNCTION ha_audit_write();
CREATE TRIGGER ha_audit_rows AFTER INSERT OR UPDATE ON archived_messages
  FOR EACH STATEMENT EXECUTE FUNCTION ha_audit_write();
"""


def writes_under(archive: str, token: int) -> int:
    """Committed batch statements that ran under `token` (the audit trigger's rows)."""
    with psycopg.connect(archive, autocommit=True, prepare_threshold=None) as conn:
        return int(conn.execute("SELECT count(*) FROM ha_audit WHERE token = %s", (str(token),)).fetchone()[0])


def test_a_leader_frozen_past_its_lease_writes_nothing_more_and_stands_by(
        pair: tuple[Daemon, Daemon], synapse_schema_db: str, fresh_db: str) -> None:
    a, b = pair
    with psycopg.connect(fresh_db, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(AUDIT_SQL)
    traffic = LiveTraffic(synapse_schema_db, ROOMS)
    traffic.start()
    frozen: list[int] = []
    try:
        _, old_token = wait_for(lambda: leads(fresh_db, "host-a"), 10, "host-a leading")
        wait_for(lambda: writes_under(fresh_db, old_token) > 10, 60, "host-a to write under its token")
        frozen = a.pids()
        started = time.monotonic()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        _, token = wait_for(lambda: leads(fresh_db, "host-b"), TAKEOVER_BOUND_S, "host-b to take the lease")
        print(f"\ntakeover from a frozen leader: {time.monotonic() - started:.2f}s (token {old_token} -> {token})")
        # Every transaction under the old token has ended: the takeover waited for it.
        at_takeover = writes_under(fresh_db, old_token)
        wait_for(lambda: writes_under(fresh_db, token) > 10, 60, "host-b to write under the new token")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: last_status(a).startswith("standby"), 30, "the resumed host-a to say standby")
    wait_for(lambda: a.role_pids("dbwriter") == [], 30, "the resumed host-a's pipeline to stop")
    before = archived_count(fresh_db)
    wait_for(lambda: archived_count(fresh_db) > before + 30, 60, "host-b to keep archiving")
    traffic.stop()
    assert writes_under(fresh_db, old_token) == at_takeover, "the old leader wrote after the takeover"
    assert leads(fresh_db, "host-b") and a.running()
    assert_archive_equals_source(synapse_schema_db, fresh_db, traffic.count)
    assert "no longer leads" in a.log() or "taken over the lease" in a.log()
