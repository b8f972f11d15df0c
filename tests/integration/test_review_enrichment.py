"""Review: WhatsApp enrichment must not be lost for good because of a timing accident.

mautrix bridgev2 creates the Matrix room first and stores portal.mxid only after
createRoom returned (facts §6.2), so the archiver can meet a portal room's first
events before the bridge DB knows the room. Rows are written with ON CONFLICT DO
NOTHING, so whatever the enricher gets wrong for a row stays wrong.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.bridge import add_ghost, add_message, add_portal
from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synth import insert_event, open_source, set_position

pytestmark = pytest.mark.synapse
ROOM = "!review-newportal:synth.test"
CHAT = "120363011111111111@g.us"
GHOST = "@whatsapp_4917000000001:synth.test"


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {ROOM: "10"}) as conn:
        yield conn


def test_room_that_becomes_a_portal_after_its_first_events_gets_whatsapp_ids(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, bridge_db: str, tmp_path: Path) -> None:
    # The bridge bot's createRoom: the room's first events are persisted...
    _, position = insert_event(source, ROOM, "m.room.create", {"room_version": "10"}, state_key="",
                               sender="@whatsappbot:synth.test")
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, "", f"  bridge_db_url: '{bridge_db}'\n")
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
        # ...and only then does the bridge save the portal row and bridge messages into it.
        message, position = insert_event(source, ROOM, "m.room.message", {"msgtype": "m.text", "body": "Hallo"},
                                         sender=GHOST)
        wa_id = f"{CHAT}:4917000000001@s.whatsapp.net:3EB0FEEDBEEF"
        with psycopg.connect(bridge_db, autocommit=True) as conn:
            add_portal(conn, CHAT, ROOM, "Familie")
            add_ghost(conn, "4917000000001", "Oma")
            add_message(conn, wa_id, message, CHAT, "4917000000001", GHOST, 1_700_000_000_000_000_000)
        set_position(source, position)
        p.run_until_caught_up(timeout_s=30)
    row = archived(fresh_db)[message]
    assert (row["whatsapp_chat_id"], row["whatsapp_message_id"], row["whatsapp_sender_id"]) == (
        CHAT, wa_id, "4917000000001")
