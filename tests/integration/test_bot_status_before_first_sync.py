"""Bot mode's `status` says caught up only once the bot's first /sync is committed.

A bot archive that has read nothing yet (migrated, the daemon not started, or
started and still logging in) has no pagination pending and no stream behind,
and was reported "caught up: yes": a monitoring check, or a script that waits for
`status --json` (./quickstart --bot, the benchmarks), took it for complete.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from mxarchiverd import status
from mxarchiverd.archive.migrations import migrate
from tests.support.nio_driver import register_bot, unique
from tests.support.pipeline import bot_pipeline, write_bot_config
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse


def test_a_bot_archive_is_not_caught_up_before_its_first_sync(
        synapse: SynapseServer, fresh_db: str, tmp_path: Path, nio_alice: Any) -> None:
    bot_id, bot_password = register_bot(synapse, unique("archiver"))
    room = nio_alice.create_room(name="waiting", invite=(bot_id,))
    sent = nio_alice.send_text(room, "sent before the archiver ever ran")
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              f"rooms:\n  - room_id: '{room}'\n")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)

    before = status.collect(config)
    assert (before.messages, before.problems) == (0, [])
    assert not before.caught_up and not before.as_dict()["caught_up"]
    assert "caught up:      no" in status.render(before)

    with bot_pipeline(config) as p:
        p.run_until_caught_up()
    after = status.collect(config)
    assert after.caught_up and after.messages >= 1
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT 1 FROM archived_messages WHERE event_id = %s", (sent,)).fetchone()
