"""Bot mode end to end: a real Synapse, real clients, the archiver as a bot user.

The same conversation is archived by both sources into two archives, and the
rows are compared column by column, apart from the columns that differ by
nature of the source (README, "Bot mode": Synapse's stream orderings, and the
event JSON, which the client API serves in client format).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.test_archive_synapse import wait_bound_covers
from tests.support.conversation import send_conversation
from tests.support.nio_driver import register_bot, unique
from tests.support.pipeline import (
    archived, bot_pipeline, pipeline, run_uploader_until_idle, write_bot_config, write_config,
)
from tests.support.postgres import PgServer
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
# Differ by nature of the source (see the module docstring); the rest must be equal.
MODE_SPECIFIC = {"id", "archived_at", "updated_at", "stream_ordering", "topological_ordering", "event", "event_raw"}


def comparable(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {event_id: {k: v for k, v in row.items() if k not in MODE_SPECIFIC} for event_id, row in rows.items()}


def media_rows(dsn: str) -> dict[tuple[str, str], tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT event_id, media_kind, media_type, original_filename, file_size, mime_type,"
                            " matrix_url, storage_path, sha256 FROM archived_media").fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def test_both_sources_archive_the_same_rows(synapse: SynapseServer, pg_server: PgServer, tmp_path: Path) -> None:
    alice = synapse.register(unique("alice"), displayname="Alice Archive")
    bob = synapse.register(unique("bob"), displayname="Bob Builder")
    sent = send_conversation(alice, bob, "Friday plans")
    bot_id, bot_password = register_bot(synapse, unique("archiver"))
    alice.invite(sent.room_id, bot_id)
    rooms = f"rooms:\n  - room_id: '{sent.room_id}'\n"

    bot_archive = pg_server.create_database("bot_archive")
    bot_config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, bot_archive, rooms)
    with bot_pipeline(bot_config) as p:
        p.run_until_caught_up()
    run_uploader_until_idle(bot_config)

    db_archive = pg_server.create_database("db_archive")
    wait_bound_covers(synapse, sent.events["media_redaction"])
    db_config = write_config(tmp_path, synapse.db_dsn, db_archive, rooms + f"matrix:\n  homeserver_url: '{synapse.base_url}'\n",
                             f"  media_store_path: {synapse.media_store_path}\n")
    with pipeline(db_config) as p:
        p.run_until_caught_up()
    run_uploader_until_idle(db_config)

    by_bot, by_db = comparable(archived(bot_archive)), comparable(archived(db_archive))
    # The bot's own invite and join come after the conversation; DB mode reads them too.
    assert set(by_bot) == set(by_db)
    # A message redacted before the bot read it comes redacted from the server: its
    # content is gone in bot mode, while DB mode still finds it in Synapse's tables.
    for event_id in sent.redacted:
        assert by_bot[event_id]["content"] == {} and by_bot[event_id]["redacted"]
        for key in ("content", "message_type"):
            by_bot[event_id].pop(key), by_db[event_id].pop(key)
    differing = {e: {k: (by_bot[e][k], by_db[e][k]) for k in by_db[e] if by_bot[e][k] != by_db[e][k]}
                 for e in by_db if by_bot[e] != by_db[e]}
    assert differing == {}
    db_media = {key: row for key, row in media_rows(db_archive).items() if key[0] not in sent.redacted}
    assert media_rows(bot_archive) == db_media != {}
    for event_id, (_mxc, sha) in sent.media.items():
        assert media_rows(bot_archive)[(event_id, "file")][-1] == sha
