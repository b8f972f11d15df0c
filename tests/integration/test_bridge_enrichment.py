"""Bridge enrichment: WhatsApp chat, message and sender ids for portal rooms only."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.integration.test_archive_synapse import wait_bound_covers
from tests.support.bridge import add_ghost, add_message, add_portal
from tests.support.pipeline import archived, pipeline, write_config
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
CHAT = "120363012345678901@g.us"


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
