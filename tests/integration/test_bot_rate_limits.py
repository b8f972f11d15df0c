"""Bot mode against a Synapse with low rc_* limits: 429s are waited out and the run completes."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from mxarchiverd.sources.matrix_sync.client import MatrixSyncClient
from mxarchiverd.sources.matrix_sync.errors import RateLimited
from mxarchiverd.sources.matrix_sync.filters import first_sync_filter
from mxarchiverd.sources.matrix_sync.plan import PlanInputs, plan_sync
from tests.support.nio_driver import NioDriver, bot_settings, register_bot, unique
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse


def open_bot(synapse: SynapseServer, state_dir: Path, **overrides) -> MatrixSyncClient:
    user_id, password = register_bot(synapse, unique("bot"))
    return MatrixSyncClient.open(bot_settings(synapse, user_id, password, state_dir, **overrides))


def test_rate_limited_logins_and_joins_are_waited_out(limited_synapse: SynapseServer,
                                                      tmp_path: Path) -> None:
    alice = NioDriver.register(limited_synapse, unique("alice"), tmp_path / "drivers")
    try:
        started = time.monotonic()
        with open_bot(limited_synapse, tmp_path / "one") as first, \
                open_bot(limited_synapse, tmp_path / "two") as second:  # a second login from 127.0.0.1
            rooms = [alice.create_room(invite=(first.user_id, second.user_id)) for _ in range(3)]
            for bot in (first, second):
                assert [bot.join(room) for room in rooms] == rooms
            waited = first.stats.rate_limit_wait_s + second.stats.rate_limit_wait_s
            assert first.stats.rate_limited + second.stats.rate_limited >= 3
            # Synapse's Retry-After is whole seconds (ceil), at least 1.
            assert first.stats.last_retry_after >= 1
            assert time.monotonic() - started >= waited
            plan = plan_sync(first.sync(None, 0, first_sync_filter()).json,
                             PlanInputs(None, first.user_id))
            assert {r.room_id for r in plan.rooms if r.section == "join"} == set(rooms)
    finally:
        alice.close()


def test_a_long_rate_limit_is_raised_with_the_servers_delay(limited_synapse: SynapseServer,
                                                            tmp_path: Path) -> None:
    alice = NioDriver.register(limited_synapse, unique("alice"), tmp_path / "drivers")
    try:
        with open_bot(limited_synapse, tmp_path / "state", max_rate_limit_wait_s=0.0) as bot:
            rooms = [alice.create_room(invite=(bot.user_id,)) for _ in range(3)]
            joined, limited = [], None
            for room in rooms:
                try:
                    joined.append(bot.join(room))
                except RateLimited as exc:
                    limited = exc
                    bot.pause(exc.retry_after)  # what the stage does, heartbeat ticking
                    joined.append(bot.join(room))
            assert limited is not None and limited.retry_after >= 1 and limited.status == 429
            assert joined == rooms
    finally:
        alice.close()


def test_the_archiver_completes_its_run_on_a_rate_limited_homeserver(limited_synapse: SynapseServer,
                                                                     fresh_db: str, tmp_path: Path) -> None:
    import psycopg

    from tests.support.pipeline import bot_pipeline, write_bot_config

    alice = NioDriver.register(limited_synapse, unique("alice"), tmp_path / "drivers")
    try:
        bot_id, password = register_bot(limited_synapse, unique("archiver"))
        rooms = [alice.create_room(name=f"limited {i}", invite=(bot_id,)) for i in range(4)]
        sent = [alice.send_text(room, f"hello {room}") for room in rooms]  # rc_message: 429s for alice too
        config = write_bot_config(tmp_path, limited_synapse.base_url, bot_id, password, fresh_db,
                                  "rooms:\n" + "".join(f"  - room_id: '{r}'\n" for r in rooms))
        with bot_pipeline(config) as p:
            p.run_until_caught_up(timeout_s=180)
            limited = p.poller.source.client.stats.rate_limited  # type: ignore[attr-defined]
        with psycopg.connect(fresh_db) as conn:
            archived = {r[0] for r in conn.execute("SELECT event_id FROM archived_messages")}
        assert set(sent) <= archived
        assert limited >= 2  # the joins of four rooms at 0.5/s with a burst of one were refused, then waited out
    finally:
        alice.close()
