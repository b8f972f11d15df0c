"""Bridge enrichment: WhatsApp chat, message and sender ids for portal rooms only.

mautrix bridgev2 creates the Matrix room first and stores portal.mxid only after
createRoom returned (facts §6.2), so the archiver can meet a portal room's first
events before the bridge DB knows the room; and the bridge writes its message row
just after Synapse stores the event. Neither timing accident may lose the ids for
good (rows are written with ON CONFLICT DO NOTHING).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_archive_synapse import wait_bound_covers
from tests.support.bridge import add_ghost, add_message, add_portal
from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synapse import SynapseServer
from tests.support.synth import insert_event, open_source, set_position

pytestmark = pytest.mark.synapse
CHAT = "120363012345678901@g.us"
LATE_ROOM = "!newportal:synth.test"
LATE_CHAT = "120363011111111111@g.us"
LATE_GHOST = "@whatsapp_4917000000001:synth.test"


@pytest.fixture
def source(synapse_schema_db: str) -> Iterator[psycopg.Connection]:
    with open_source(synapse_schema_db, {LATE_ROOM: "10"}) as conn:
        yield conn


def test_portal_room_gets_whatsapp_ids_and_plain_room_stays_plain(
        synapse: SynapseServer, bridge_db: str, fresh_db: str, tmp_path: Path) -> None:
    ghost = synapse.register("whatsapp_4917012345678", displayname="Max (WA)")
    lid_ghost = synapse.register("whatsapp_lid-998877")
    alice = synapse.register("alice_bridge")
    portal_room = ghost.create_room(name="Familie", invite=[alice.user_id, lid_ghost.user_id])
    alice.join(portal_room)
    lid_ghost.join(portal_room)
    plain_room = alice.create_room(name="Matrix only")
    bridged = ghost.send_text(portal_room, "Hallo zusammen")
    deleted_in_bridge = lid_ghost.send_text(portal_room, "row deleted by the bridge")
    plain = alice.send_text(plain_room, "not bridged")
    wait_bound_covers(synapse, plain)
    wa_message_id = f"{CHAT}:4917012345678@s.whatsapp.net:3EB0ABCDEF"
    with psycopg.connect(bridge_db, autocommit=True) as conn:
        add_portal(conn, CHAT, portal_room, "Familie (WhatsApp)")
        add_ghost(conn, "4917012345678", "Max Mustermann")
        add_ghost(conn, "lid-998877", "Erika", identifiers=["tel:+4915112345678"])
        add_message(conn, wa_message_id, bridged, CHAT, "4917012345678", ghost.user_id, 1_700_000_000_000_000_000)
    config = write_config(tmp_path, synapse.db_dsn, fresh_db, f"rooms:\n  - room_id: '{plain_room}'\n",
                          f"  bridge_db_url: '{bridge_db}'\n  auto_discover_bridged_rooms: true\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
    rows = archived(fresh_db)
    row = rows[bridged]
    assert (row["whatsapp_chat_id"], row["whatsapp_message_id"], row["whatsapp_sender_id"]) == (
        CHAT, wa_message_id, "4917012345678")
    assert row["sender_phone"] == "+4917012345678" and row["room_name"] == "Familie"
    assert row["sender_display_name"] == "Max (WA)"
    lid = rows[deleted_in_bridge]
    assert lid["whatsapp_sender_id"] == "lid-998877" and lid["sender_phone"] == "+4915112345678"
    assert lid["whatsapp_message_id"] is None
    plain_row = rows[plain]
    assert plain_row["whatsapp_chat_id"] is None and plain_row["sender_phone"] is None
    with psycopg.connect(fresh_db) as conn:
        registry = dict(conn.execute("SELECT room_id, whatsapp_id FROM monitored_rooms").fetchall())
        kinds = dict(conn.execute("SELECT room_id, bridge_type FROM monitored_rooms").fetchall())
    assert registry[portal_room] == CHAT and registry[plain_room] is None
    assert kinds[portal_room] == "whatsapp" and kinds[plain_room] == "matrix"


def test_whatsapp_ids_the_bridge_records_after_the_message_was_archived_are_filled_in(
        synapse: SynapseServer, bridge_db: str, fresh_db: str, tmp_path: Path) -> None:
    ghost = synapse.register("whatsapp_4915700000001")
    room = ghost.create_room(name="Late bridge row")
    chat = "120363000000000077@g.us"
    with psycopg.connect(bridge_db, autocommit=True) as conn:
        add_portal(conn, chat, room, "Late")
        add_ghost(conn, "4915700000001", "Late Sender")
    event = ghost.send_text(room, "archived before the bridge wrote its row")
    wait_bound_covers(synapse, event)
    config = write_config(tmp_path, synapse.db_dsn, fresh_db, f"rooms:\n  - room_id: '{room}'\n",
                          f"  bridge_db_url: '{bridge_db}'\n")
    with pipeline(config) as p:
        p.run_until_caught_up()
        assert archived(fresh_db)[event]["whatsapp_chat_id"] == chat
        assert archived(fresh_db)[event]["whatsapp_message_id"] is None
        wa_id = f"{chat}:4915700000001@s.whatsapp.net:3EB0LATE"
        with psycopg.connect(bridge_db, autocommit=True) as conn:
            add_message(conn, wa_id, event, chat, "4915700000001", ghost.user_id, 1_700_000_000_000_000_000)
        p.follower.next_late_fill = 0.0
        p.round()
    row = archived(fresh_db)[event]
    assert (row["whatsapp_message_id"], row["whatsapp_sender_id"], row["sender_phone"]) == (
        wa_id, "4915700000001", "+4915700000001")


def test_room_that_becomes_a_portal_after_its_first_events_gets_whatsapp_ids(
        source: psycopg.Connection, synapse_schema_db: str, fresh_db: str, bridge_db: str, tmp_path: Path) -> None:
    # The bridge bot's createRoom: the room's first events are persisted...
    _, position = insert_event(source, LATE_ROOM, "m.room.create", {"room_version": "10"}, state_key="",
                               sender="@whatsappbot:synth.test")
    set_position(source, position)
    config = write_config(tmp_path, synapse_schema_db, fresh_db, "", f"  bridge_db_url: '{bridge_db}'\n")
    with pipeline(config) as p:
        p.run_until_caught_up(timeout_s=30)
        # ...and only then does the bridge save the portal row and bridge messages into it.
        message, position = insert_event(source, LATE_ROOM, "m.room.message", {"msgtype": "m.text", "body": "Hallo"},
                                         sender=LATE_GHOST)
        wa_id = f"{LATE_CHAT}:4917000000001@s.whatsapp.net:3EB0FEEDBEEF"
        with psycopg.connect(bridge_db, autocommit=True) as conn:
            add_portal(conn, LATE_CHAT, LATE_ROOM, "Familie")
            add_ghost(conn, "4917000000001", "Oma")
            add_message(conn, wa_id, message, LATE_CHAT, "4917000000001", LATE_GHOST, 1_700_000_000_000_000_000)
        set_position(source, position)
        p.run_until_caught_up(timeout_s=30)
    row = archived(fresh_db)[message]
    assert (row["whatsapp_chat_id"], row["whatsapp_message_id"], row["whatsapp_sender_id"]) == (
        LATE_CHAT, wa_id, "4917000000001")
