"""Bot mode at the default log level (INFO) writes no log line per archived event.

nio logs each timeline event it handles at INFO ("Room ... handling event of type
RoomMessageText"), so following a busy room, or reading a 20,000-event history,
put one journal line per event beside the few lines an operator must see (a kick,
a rate limit, an outage). DB mode logs nothing per event; bot mode now neither.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.support.nio_driver import register_bot, unique
from tests.support.pipeline import archived, bot_pipeline, write_bot_config
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
EVENTS = 60


def test_following_a_room_logs_no_line_per_event(synapse: SynapseServer, fresh_db: str, tmp_path: Path,
                                                 nio_alice: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    bot_id, bot_password = register_bot(synapse, unique("archiver"))
    room = nio_alice.create_room(name="busy", invite=(bot_id,))
    history = nio_alice.send_many(room, EVENTS // 2, prefix="history")
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              f"rooms:\n  - room_id: '{room}'\n", matrix_extra="  timeline_limit: 5\n")
    with bot_pipeline(config) as p:
        p.run_until_caught_up()
        live = nio_alice.send_many(room, EVENTS // 2, prefix="live")
        p.run_until(lambda: set(live) <= set(archived(fresh_db, room)), what="the live events archived")
    assert set(history) <= set(archived(fresh_db, room))

    # httpx: the test's own registration client, not the archiver.
    info = [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno == logging.INFO and r.name != "httpx"]
    per_event = [line for line in info if room in line and "handling event" in line]
    assert per_event == []
    assert len(info) < EVENTS // 2, "\n".join(info)  # the login, the join, the history done: not one per event
