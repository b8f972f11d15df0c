"""The metrics endpoint of the real daemon, scraped while it archives: the counters move, agree
with the archive, and survive a stage's restart (summed over every process of the run)."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.test_daemon_survives_kills_and_reloads import ROOMS, Writer
from mxarchiverd.workers.dbwriter import MERGED_BATCHES
from tests.support.daemon import Daemon, Entry
from tests.support.postgres import free_port
from tests.support.synth import add_room
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def scrape(url: str) -> dict[tuple[str, str], float]:
    """(metric name, labels text) -> value, from the Prometheus text format."""
    found: dict[tuple[str, str], float] = {}
    for line in httpx.get(url, timeout=10).raise_for_status().text.splitlines():
        match = SAMPLE.match(line)
        if match:
            found[(match["name"], match["labels"] or "")] = float(match["value"])
    return found


def total(samples: dict[tuple[str, str], float], name: str) -> float:
    return sum(value for (metric, _), value in samples.items() if metric == name)


@pytest.fixture
def source(synapse_schema_db: str) -> str:
    with psycopg.connect(synapse_schema_db, autocommit=True) as conn:
        for room in ROOMS:
            add_room(conn, room)
    return synapse_schema_db


@pytest.fixture
def metrics_daemon(source: str, fresh_db: str, tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    port = free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # As systemd's RuntimeDirectory=: the run's metrics directory goes there.
    daemon = Daemon(tmp_path, entry=Entry.MODULE, notify=True, env={"RUNTIME_DIRECTORY": str(run_dir)})
    daemon.write_config(
        f"source:\n  synapse_db_url: '{source}'\narchive:\n  database_url: '{fresh_db}'\n"
        f"  storage_path: {tmp_path / 'media'}\nprocessing:\n  batch_size: 20\n  poll_interval: 100ms\n"
        f"metrics:\n  listen: {port}\n"
        "daemon:\n  restart_backoff_initial: 100ms\n  restart_backoff_max: 1s\n  startup_timeout: 20s\n")
    with daemon:
        daemon.start().wait_ready(60)
        yield daemon, f"http://127.0.0.1:{port}/metrics"


def archive_counts(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(*) FILTER (WHERE event_type = 'm.room.message')"
                           " FROM archived_messages").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_counters_move_while_archiving_and_agree_with_the_archive(
        metrics_daemon: tuple[Daemon, str], source: str, fresh_db: str, tmp_path: Path) -> None:
    daemon, url = metrics_daemon
    writer = Writer(source)
    writer.start()
    try:
        wait_for(lambda: total(scrape(url), "mxarchiverd_events_archived_total") >= 30, 60, "first events counted")
        first = scrape(url)
        wait_for(lambda: total(scrape(url), "mxarchiverd_events_archived_total")
                 > total(first, "mxarchiverd_events_archived_total") + 30, 60, "the counter to move")
        second = scrape(url)
        assert total(second, "mxarchiverd_batches_written_total") > total(first, "mxarchiverd_batches_written_total")
        assert second[("mxarchiverd_batch_write_seconds_count", "")] == second[("mxarchiverd_batches_written_total", "")]
        assert ("mxarchiverd_source_lag_positions", "") in second
        assert ('mxarchiverd_pipeline_queue_depth', 'queue="poller->enricher"') in second
        assert second[("mxarchiverd_archive_up", "")] == 1.0
    finally:
        writer.stop()
    written = writer.count
    wait_for(lambda: archive_counts(fresh_db)[0] == written, 60, "the archive to catch up")

    def archived_counted() -> float:
        return total(scrape(url), "mxarchiverd_events_archived_total")
    wait_for(lambda: archived_counted() == archive_counts(fresh_db)[0], 30, "the counter to agree with the archive")
    samples = scrape(url)
    messages = samples.get(("mxarchiverd_events_archived_total", 'event_type="m.room.message"'), 0)
    unknown = samples.get(("mxarchiverd_events_archived_total", 'event_type="unknown"'), 0)
    assert messages + unknown == archive_counts(fresh_db)[1]
    assert samples[("mxarchiverd_source_lag_positions", "")] == 0

    # A pipeline stage dies: the counters of its earlier life still count, the restart is counted.
    more = Writer(source)
    more.start()
    try:
        killed = daemon.kill_role("dbwriter", signal.SIGKILL)
        wait_for(lambda: daemon.role_pids("dbwriter") and daemon.role_pids("dbwriter") != [killed], 60,
                 "a new dbwriter")
        wait_for(lambda: scrape(url).get(("mxarchiverd_stage_restarts_total", 'stage="dbwriter"'), 0) >= 1, 30,
                 "the restart to be counted")
    finally:
        more.stop()
    wait_for(lambda: archive_counts(fresh_db)[0] == written + more.count, 60, "the archive to catch up again")
    # A dbwriter killed after its COMMIT was sent and before it counted leaves that one
    # transaction (at most MERGED_BATCHES batches, sent in one round trip by archive/batches.py)
    # archived and uncounted; nothing is ever counted that is not archived.
    archived = archive_counts(fresh_db)[0]
    wait_for(lambda: archived - MERGED_BATCHES * 20 <= archived_counted() <= archived, 30, "the counter to catch up")

    cli = [sys.executable, "-m", "mxarchiverd", "--config", str(daemon.config_path), "verify"]
    assert subprocess.run(cli, capture_output=True, text=True, timeout=120).returncode == 0
    after = scrape(url)
    assert after[("mxarchiverd_verify_last_exit_code", "")] == 0
    assert after[("mxarchiverd_quarantined_events", "")] == 0
    assert after[("mxarchiverd_media_jobs", 'state="dead"')] == 0
    assert [p.name for p in (tmp_path / "run").iterdir()] != []
    assert daemon.stop() == 0
    assert list((tmp_path / "run").iterdir()) == [], "the run's metrics directory outlived the daemon"
