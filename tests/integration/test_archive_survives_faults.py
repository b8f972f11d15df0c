"""The project's own fault test, at CI scale: during a history backfill with live traffic
(text and media), kill -9 random stages several times and cut the archive connection
for a few seconds (a stall, then resets) through a loopback TCP proxy. Afterwards the
archive equals the source, with no duplicates, and every file is stored byte for byte.

The fault sequence is random; its seed is printed (MXARCHIVERD_FAULT_SEED replays one).
"""
from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, Entry
from tests.support.tcp_proxy import TcpProxy
from tests.support.traffic import (
    LiveTraffic, archive_ids, archived_count, bulk_history, file_sha256, source_ids, source_media, stored_media,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]
ROOMS = [f"!fault{i}:synth.test" for i in range(4)]
HISTORY = 6_000
ROLES = ("poller", "enricher", "dbwriter", "uploader", "lease")
KILLS = 6
CUT_S = 3.0
BUCKET = "matrix-media"


def fault_daemon(tmp_path: Path, source: str, archive: str, media_store: Path) -> Daemon:
    daemon = Daemon(tmp_path, entry=Entry.MODULE, notify=True, watchdog_usec=10_000_000)
    daemon.write_config(
        f"source:\n  synapse_db_url: '{source}'\n  media_store_path: {media_store}\n"
        f"archive:\n  database_url: '{archive}'\n  storage_path: {tmp_path / 'objects'}\n"
        "processing:\n  batch_size: 50\n  poll_interval: 100ms\n  retry_delay: 500ms\n"
        "daemon:\n  restart_backoff_initial: 100ms\n  restart_backoff_max: 2s\n  restart_limit: 60\n"
        "  heartbeat_timeout: 30s\n  startup_timeout: 30s\n  stop_timeout: 30s\n"
        "  ha:\n    enabled: true\n    lease_duration: 6s\n    renew_interval: 1s\n    holder: only-host\n")
    return daemon


def kill_a_stage(daemon: Daemon, role: str) -> None:
    pid = daemon.wait_role(role, 60)
    os.kill(pid, signal.SIGKILL)
    daemon.wait_role(role, 60, other_than=pid)


def cut_archive(proxy: TcpProxy, mode: str) -> None:
    proxy.cut(mode)
    try:
        time.sleep(CUT_S)  # the outage itself: how long the link stays down, not a wait for a condition
    finally:
        proxy.restore()


def test_kills_and_archive_outages_during_a_backfill_lose_and_duplicate_nothing(
        synapse_schema_db: str, fresh_db: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("MXARCHIVERD_FAULT_SEED") or random.randrange(1 << 30))
    print(f"\nfault seed: {seed}")
    chance = random.Random(seed)
    media_store = tmp_path / "media_store"
    bulk_history(synapse_schema_db, ROOMS, HISTORY)
    traffic = LiveTraffic(synapse_schema_db, ROOMS, media_store=media_store, media_every=10, pause_s=0.02)
    for _ in range(100):  # media in the history too
        traffic.write_one()
    proxy = TcpProxy.start_for(fresh_db)
    try:
        with fault_daemon(tmp_path, synapse_schema_db, proxy.dsn_for(fresh_db), media_store) as daemon:
            daemon.start().wait_ready(90)
            traffic.start()
            faults = [*chance.choices(ROLES, k=KILLS), "stall", "reset"]
            chance.shuffle(faults)
            for fault in faults:
                before = archived_count(fresh_db)
                if fault in ("stall", "reset"):
                    cut_archive(proxy, fault)
                else:
                    kill_a_stage(daemon, fault)
                print(f"{fault}: archived {before} before, {archived_count(fresh_db)} after")
                wait_for(lambda: archived_count(fresh_db) > before + 100, 90, f"archiving to go on after {fault}")
            traffic.stop()
            expected = source_ids(synapse_schema_db)
            wait_for(lambda: set(archive_ids(fresh_db)) >= expected, 180, "the archive to catch up")
            daemon.wait_caught_up(180, min_messages=len(expected))
            assert daemon.stop(40) == 0, daemon.tail()
    finally:
        proxy.stop()
    ids = archive_ids(fresh_db)
    assert len(ids) == len(set(ids)), "duplicates in the archive"
    assert set(ids) == expected and len(expected) == HISTORY + traffic.count
    files = source_media(media_store)
    stored = stored_media(fresh_db)
    assert len(files) == traffic.count // 10 + (traffic.count % 10 > 0) and set(stored) == set(files)
    for url, sha in files.items():
        path, recorded = stored[url]
        assert recorded == sha and file_sha256(tmp_path / "objects" / BUCKET / path) == sha, url
