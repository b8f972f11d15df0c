"""Media jobs that are dead-lettered are loud: a WARNING with the count as they die, the
count in the uploader's STATUS= numbers, and the count and last reason in `status`
(it was 257 of 277 jobs dead in 75 s without a single warning)."""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import psycopg
import pytest

from mxarchiverd import cli, status
from mxarchiverd.workers.uploader import Uploader
from tests.integration.test_archive_synapse import wait_bound_covers
from tests.integration.test_media import send_file
from tests.support.pipeline import pipeline, write_config
from tests.support.synapse import SynapseServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.synapse
DIED = re.compile(r"(\d+) media job\(s\) went dead")


def dead_jobs(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM media_jobs WHERE state = 'dead'").fetchone()
    return int(row[0]) if row else 0


def test_dead_media_jobs_are_counted_warned_and_shown(synapse: SynapseServer, fresh_db: str, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    alice = synapse.register("alice_dead_letters")
    room = alice.create_room(name="dead letters")
    sent = [send_file(alice, room, os.urandom(1000 + i), "image/png", f"d{i}.png", "m.image")[0] for i in range(3)]
    wait_bound_covers(synapse, sent[-1])
    # The store went away after the start-up check (unmounted, say) and there is no token.
    config = write_config(tmp_path, synapse.db_dsn, fresh_db,
                          f"rooms:\n  - room_id: '{room}'\nprocessing:\n  retry_attempts: 1\n"
                          "  media_thumbnails: false\n", f"  media_store_path: {tmp_path / 'gone'}\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
    uploader = Uploader(config, lambda: None)
    uploader.open()
    try:
        def reported() -> list[str]:
            return [r.getMessage() for r in caplog.records if DIED.search(r.getMessage())]

        def all_reported() -> bool:
            uploader.produce()
            return sum(int(DIED.search(m)[1]) for m in reported()) == len(sent)  # type: ignore[index]

        with caplog.at_level(logging.WARNING):
            wait_for(all_reported, 30, "warnings counting every dead-lettered job")
        died = reported()
        assert dead_jobs(fresh_db) == len(sent)
        assert all(r.levelno == logging.WARNING for r in caplog.records if DIED.search(r.getMessage()))
        assert "not in the media store" in died[-1] and "media-retry" in died[-1]
    finally:
        uploader.close()
    restarted = Uploader(config, lambda: None)
    restarted.open()
    try:
        assert restarted.stats()["media_dead"] == len(sent)
    finally:
        restarted.close()
    found = status.collect(config)
    assert found.media.get("dead") == len(sent) and "not in the media store" in (found.media_dead_last_error or "")
    text = status.render(found)
    assert "media dead:" in text and "not in the media store" in text and "mxarchiverd media-retry" in text
    config_file = tmp_path / "mxarchiver.yaml"
    assert cli.main(["--config", str(config_file), "status", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["media"]["dead"] == len(sent) and "not in the media store" in shown["media_dead_last_error"]
