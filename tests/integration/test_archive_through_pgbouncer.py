"""The archive behind a real PgBouncer in transaction mode with a small pool (as Supabase's
pooler on port 6543): migrate, run (with the leadership lease), status and verify all work,
although no session state survives a transaction there."""
from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.support.daemon import Daemon, Entry
from tests.support.pgbouncer import POOL_SIZE, PgBouncer
from tests.support.postgres import PgServer
from tests.support.traffic import LiveTraffic, archive_ids, source_ids

ROOMS = ["!bouncer0:synth.test", "!bouncer1:synth.test"]


def admin(bouncer: PgBouncer, command: str) -> dict[str, str]:
    with psycopg.connect(bouncer.dsn_for(bouncer.target.dsn("pgbouncer")), autocommit=True,
                         prepare_threshold=None) as conn:
        cur = conn.execute(command)
        names = [c.name for c in cur.description or []]
        return {row[names.index("key")]: row[names.index("value")] for row in cur.fetchall()}


def test_the_pooler_runs_in_transaction_mode_with_a_small_pool(pgbouncer: PgBouncer, pg_server: PgServer) -> None:
    settings = admin(pgbouncer, "SHOW CONFIG")
    assert settings["pool_mode"] == "transaction" and int(settings["default_pool_size"]) == POOL_SIZE
    dsn = pgbouncer.dsn_for(pg_server.dsn("postgres"))
    # Session state belongs to the server connection, not to the client: with every other
    # server connection busy, b gets the one a used, and sees a's session SET.
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as a, \
         psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as b:
        held = [psycopg.connect(dsn, prepare_threshold=None) for _ in range(POOL_SIZE - 1)]
        try:
            for conn in held:  # every other server connection is busy in a transaction
                conn.execute("SELECT 1")
            a.execute("SET application_name = 'session state'")
            assert b.execute("SHOW application_name").fetchone()[0] == "session state"
        finally:
            for conn in held:
                conn.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_migrate_run_status_and_verify_through_pgbouncer(pgbouncer: PgBouncer, pg_server: PgServer,
                                                       synapse_schema_db: str, tmp_path: Path) -> None:
    archive = pgbouncer.dsn_for(pg_server.create_database("bouncer"))
    daemon = Daemon(tmp_path, entry=Entry.MODULE)
    daemon.write_config(
        f"source:\n  synapse_db_url: '{synapse_schema_db}'\narchive:\n  database_url: '{archive}'\n"
        f"  storage_path: {tmp_path / 'media'}\nprocessing:\n  batch_size: 20\n  poll_interval: 100ms\n"
        "daemon:\n  startup_timeout: 30s\n  ha:\n    enabled: true\n    lease_duration: 4s\n    renew_interval: 1s\n"
        "    holder: bounced\n")
    migrated = daemon.cli("migrate")
    assert migrated.returncode == 0 and "011_leadership" in migrated.stdout, migrated.stderr
    traffic = LiveTraffic(synapse_schema_db, ROOMS)
    for _ in range(150):
        traffic.write_one()
    with daemon:
        daemon.start()
        status = daemon.wait_caught_up(120, min_messages=150)
        assert status["leadership"]["holder"] == "bounced" and status["leadership"]["valid"]
        for _ in range(50):
            traffic.write_one()
        daemon.wait_caught_up(60, min_messages=200)
        text = daemon.cli("status")
        assert text.returncode == 0 and "leader:         bounced since" in text.stdout
        checked = daemon.cli("verify")
        assert checked.returncode == 0 and "0 problem(s)" in checked.stdout, checked.stdout + checked.stderr
        assert daemon.stop(30) == 0, daemon.tail()
    traffic.conn.close()
    ids = archive_ids(archive)
    assert len(ids) == len(set(ids)) and set(ids) == source_ids(synapse_schema_db)
    assert json.loads(daemon.cli("status", "--json").stdout)["leadership"]["valid"] is False, "released on stop"
