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


def room_ids_in(dsn: str, room_id: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM archived_messages WHERE room_id = %s", (room_id,))]


def status_of(config: Any) -> Any:
    from mxarchiverd import status

    return status.collect(config)


def _membership(config: Any, room_id: str) -> str | None:
    out = status_of(config)
    return next((r["membership"] for r in out.bot["rooms"] if r["room_id"] == room_id), None)


def test_events_sent_while_the_bot_was_stopped_are_all_archived_once(
        synapse: SynapseServer, fresh_db: str, tmp_path: Path, nio_alice: Any) -> None:
    bot_id, bot_password = register_bot(synapse, unique("archiver"))
    rooms = [nio_alice.create_room(name=f"busy {i}", invite=(bot_id,)) for i in range(3)]
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              "rooms:\n" + "".join(f"  - room_id: '{r}'\n" for r in rooms),
                              matrix_extra="  timeline_limit: 5\n")
    with bot_pipeline(config) as p:
        p.run_until_caught_up()
    # Stopped: more events than one /sync timeline holds, in every room.
    sent = {room: nio_alice.send_many(room, 40, prefix=f"while stopped in {room}") for room in rooms}
    with bot_pipeline(config) as p:
        p.run_until_caught_up()
    for room in rooms:
        archived_ids = room_ids_in(fresh_db, room)
        assert set(sent[room]) <= set(archived_ids)
        assert len(archived_ids) == len(set(archived_ids))
    with psycopg.connect(fresh_db) as conn:
        gaps = conn.execute("SELECT count(*), count(*) FILTER (WHERE state = 'done') FROM room_pagination"
                            " WHERE kind = 'gap'").fetchone()
    assert gaps is not None and gaps[0] >= 3 and gaps[0] == gaps[1]  # each limited timeline was paged


@pytest.mark.parametrize("visibility, admin, filled_by", [
    ("shared", False, "bot"),          # a rejoined member sees what it missed
    ("joined", True, "admin api"),     # only the admin API shows it
    ("joined", False, None),           # nobody the bot may use can: unfillable, and reported
])
def test_a_kick_opens_a_hole_that_is_filled_where_it_can_be(
        synapse: SynapseServer, fresh_db: str, tmp_path: Path, nio_alice: Any, caplog: pytest.LogCaptureFixture,
        visibility: str, admin: bool, filled_by: str | None) -> None:
    from mxarchiverd.verify import verify

    bot_id, bot_password = register_bot(synapse, unique("archiver"), admin=admin)
    room = nio_alice.create_room(name="bridged", invite=(bot_id,), history_visibility=visibility)
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              f"rooms:\n  - room_id: '{room}'\n")
    with bot_pipeline(config) as p:
        p.run_until_caught_up()
        nio_alice.kick(room, bot_id, reason="User is not in remote chat")
        missed = nio_alice.send_many(room, 5, prefix="while the bot was out")
        p.run_until(lambda: any("User is not in remote chat" in r.getMessage() for r in caplog.records),
                    what="the kick reported")
        out = status_of(config)
        assert out.bot and out.bot["unfilled_holes"] == 1
        assert any(r["membership"] == "leave" and r["reason"] == "User is not in remote chat" for r in out.bot["rooms"])
        nio_alice.invite(room, bot_id)
        p.run_until(lambda: _membership(config, room) == "join", what="the bot back in the room")
        after = nio_alice.send_text(room, "the bot is back")
        p.run_until(lambda: after in room_ids_in(fresh_db, room), what="the rejoined room followed again")
        p.run_until_caught_up()
    with psycopg.connect(fresh_db) as conn:
        holes = conn.execute("SELECT after_event_id IS NOT NULL, before_event_id IS NOT NULL, state, filled_by,"
                             " reason FROM room_holes").fetchall()
    archived_ids = set(room_ids_in(fresh_db, room))
    reports = verify(config)
    if filled_by is None:
        assert holes == [(True, True, "unfillable", None, "User is not in remote chat")]
        assert not set(missed) & archived_ids
        assert [len(r.holes) for r in reports] == [1] and not reports[0].complete
    else:
        assert holes == [(True, True, "filled", filled_by, "User is not in remote chat")]
        assert set(missed) <= archived_ids
        assert all(r.complete for r in reports)


def test_a_room_an_admin_bot_cannot_join_is_read_through_the_admin_api(
        synapse: SynapseServer, fresh_db: str, tmp_path: Path, nio_alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mxarchiverd.sources.matrix_sync import follower

    monkeypatch.setattr(follower, "ADMIN_FOLLOW_INTERVAL", 0.0)
    bot_id, bot_password = register_bot(synapse, unique("archiver"), admin=True)
    room = nio_alice.create_room(name="no bots invited")  # private: the bot may not join
    before = nio_alice.send_many(room, 3, prefix="before")
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              f"rooms:\n  - room_id: '{room}'\n")
    with bot_pipeline(config) as p:
        p.run_until(lambda: set(before) <= set(room_ids_in(fresh_db, room)), what="the history read as an admin")
        later = nio_alice.send_text(room, "later")
        p.run_until(lambda: later in room_ids_in(fresh_db, room), what="a later message read as an admin")
    ids = room_ids_in(fresh_db, room)
    assert len(ids) == len(set(ids))
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT history_complete FROM monitored_rooms WHERE room_id = %s", (room,)).fetchone() == (
            True,)
