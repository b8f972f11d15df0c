"""The uploader after its databases dropped its connections (an outage, a restart, a
pooler that closes idle clients): no job fails on a dead pooled connection, and a job
whose worker failed is due again at once instead of waiting out its 120 s lease
(media used to arrive 2 minutes late, logged as unexpected failures)."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.archive import media_queue as sql
from mxarchiverd.workers import uploader as uploader_module
from mxarchiverd.workers.uploader import Uploader
from tests.integration.test_archive_synapse import wait_bound_covers
from tests.integration.test_media import archived_media, media_config, send_file
from tests.support.pipeline import pipeline
from tests.support.storage_double import StorageDouble
from tests.support.synapse import SynapseServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.synapse
# Far below the lease: a job that waited its lease out cannot make it in time.
IN_TIME = 30.0


def terminate(dsn: str, application: str) -> int:
    """What an outage does to the uploader's pooled connections: the server drops them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = %s", (application,)).fetchall()
    return len(rows)


def done_within(uploader: Uploader, archive: str, events: list[str], timeout: float) -> None:
    def all_done() -> bool:
        uploader.produce()
        return set(events) <= set(archived_media(archive))
    wait_for(all_done, timeout, "every file uploaded")


@pytest.mark.direct_archive  # terminates backends by application_name: a pooler shares them
def test_pooled_connections_the_servers_dropped_are_replaced(
        synapse: SynapseServer, storage_double: StorageDouble, fresh_db: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    assert sql.LEASE_SECONDS > 2 * IN_TIME
    alice = synapse.register("alice_db_outage")
    room = alice.create_room(name="db outage")
    config = media_config(tmp_path, synapse, fresh_db, storage_double, room, extra="  concurrent_uploads: 3\n")
    uploader = Uploader(config, lambda: None)
    uploader.open()
    try:
        with pipeline(config) as p:
            first = [send_file(alice, room, os.urandom(5000 + i), "image/png", f"a{i}.png", "m.image")[0]
                     for i in range(3)]
            wait_bound_covers(synapse, first[-1])
            p.run_until_caught_up()
            done_within(uploader, fresh_db, first, IN_TIME)  # every pooled connection has been used
            assert terminate(synapse.db_dsn, "mxarchiverd uploader synapse") >= 1
            assert terminate(fresh_db, "mxarchiverd uploader") >= 1
            later = [send_file(alice, room, os.urandom(6000 + i), "image/png", f"b{i}.png", "m.image")[0]
                     for i in range(4)]
            wait_bound_covers(synapse, later[-1])
            p.run_until_caught_up()
            with caplog.at_level(logging.WARNING):
                done_within(uploader, fresh_db, later, IN_TIME)
    finally:
        uploader.close()
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, problems


def test_a_job_whose_worker_failed_is_due_again_at_once(
        synapse: SynapseServer, storage_double: StorageDouble, fresh_db: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    alice = synapse.register("alice_worker_failed")
    room = alice.create_room(name="worker failed")
    event = send_file(alice, room, os.urandom(4000), "image/png", "c.png", "m.image")[0]
    wait_bound_covers(synapse, event)
    config = media_config(tmp_path, synapse, fresh_db, storage_double, room, extra="  retry_delay: 100ms\n")
    real_transfer, failures = uploader_module.transfer, []

    def fails_once(*args: object, **kwargs: object) -> object:
        if not failures:
            failures.append(time.monotonic())
            raise RuntimeError("a bug in a worker")
        return real_transfer(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(uploader_module, "transfer", fails_once)
    with pipeline(config) as p:
        p.run_until_caught_up()
    uploader = Uploader(config, lambda: None)
    uploader.open()
    try:
        with caplog.at_level(logging.WARNING):
            done_within(uploader, fresh_db, [event], IN_TIME)
    finally:
        uploader.close()
    assert failures and any("a bug in a worker" in r.getMessage() for r in caplog.records)
