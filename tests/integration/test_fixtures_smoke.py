"""The test fixtures themselves: real PostgreSQL, real Synapse, bridge schema."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.support.bridge import add_ghost, add_message, add_portal
from tests.support.postgres import PgServer, dbname_of
from tests.support.synapse import REQUIRED_TABLES, SynapseServer, missing_tables
from tests.support.waiting import wait_for


def public_tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchall()
    return {name for (name,) in rows}


# fresh_db --------------------------------------------------------------------


def test_fresh_db_is_empty_and_usable(fresh_db: str) -> None:
    assert dbname_of(fresh_db).startswith("t_")
    with psycopg.connect(fresh_db) as conn:
        assert public_tables(conn) == set()
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO probe VALUES (1, 'x')")
        assert conn.execute("SELECT body FROM probe").fetchone() == ("x",)


def test_fresh_db_is_unique_per_test(fresh_db: str, pg_server: PgServer) -> None:
    other = pg_server.create_database("t")
    try:
        assert dbname_of(other) != dbname_of(fresh_db)
    finally:
        pg_server.drop_database(dbname_of(other))


# synapse ---------------------------------------------------------------------


def events_bound(conn: psycopg.Connection) -> int | None:
    row = conn.execute(
        "SELECT MIN(stream_id) FROM stream_positions WHERE stream_name = 'events'"
    ).fetchone()
    return row[0] if row else None


def stored_event(conn: psycopg.Connection, event_id: str) -> tuple | None:
    return conn.execute(
        "SELECT e.room_id, e.type, e.stream_ordering, e.outlier, j.json"
        " FROM events e JOIN event_json j USING (event_id) WHERE e.event_id = %s",
        (event_id,),
    ).fetchone()


@pytest.mark.synapse
def test_synapse_created_its_schema(synapse: SynapseServer) -> None:
    assert missing_tables(synapse.db_dsn) == []
    assert set(REQUIRED_TABLES) >= {"events", "event_json", "stream_positions"}


@pytest.mark.synapse
def test_sent_message_lands_in_events(synapse: SynapseServer,
                                      synapse_db: psycopg.Connection) -> None:
    with synapse.register("smoke_sender") as alice:
        room_id = alice.create_room(name="smoke")
        event_id = alice.send_text(room_id, "hello archive")
    room, event_type, ordering, outlier, raw = stored_event(synapse_db, event_id)
    assert (room, event_type, outlier) == (room_id, "m.room.message", False)
    assert ordering > 0
    assert json.loads(raw)["content"]["body"] == "hello archive"
    # The commit-safe bound catches up with the event once its batch is done.
    wait_for(lambda: (events_bound(synapse_db) or 0) >= ordering, 10,
             "stream_positions 'events' to reach the new event")


@pytest.mark.synapse
def test_client_relations_are_recorded(synapse: SynapseServer,
                                       synapse_db: psycopg.Connection) -> None:
    with synapse.register("smoke_relations") as bob:
        room_id = bob.create_room()
        root = bob.send_text(room_id, "root")
        sent = {
            bob.edit(room_id, root, "root, edited"): ("m.replace", None),
            bob.react(room_id, root, "👍"): ("m.annotation", "👍"),
            bob.send_text(room_id, "in thread", thread_root=root): ("m.thread", None),
        }
        reply = bob.send_text(room_id, "a reply", reply_to=root)
        redaction = bob.redact(room_id, reply, reason="smoke")
    rows = synapse_db.execute(
        "SELECT event_id, relation_type, aggregation_key FROM event_relations"
        " WHERE relates_to_id = %s", (root,),
    ).fetchall()
    assert {r[0]: (r[1], r[2]) for r in rows} == sent
    redacts = synapse_db.execute(
        "SELECT redacts FROM redactions WHERE event_id = %s", (redaction,)).fetchone()
    assert redacts == (reply,)


@pytest.mark.synapse
def test_upload_streams_from_path(synapse: SynapseServer, synapse_db: psycopg.Connection,
                                  tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4096 + b"tail"
    source = tmp_path / "blob.bin"
    source.write_bytes(payload)
    with synapse.register("smoke_media") as carol:
        mxc = carol.upload(source, "application/octet-stream", "blob.bin")
        assert carol.download(mxc) == payload
    server_name, media_id = mxc.removeprefix("mxc://").split("/")
    assert server_name == synapse.server_name
    row = synapse_db.execute(
        "SELECT media_length, upload_name FROM local_media_repository WHERE media_id = %s",
        (media_id,),
    ).fetchone()
    assert row == (len(payload), "blob.bin")
    on_disk = synapse.media_store_path / "local_content" / media_id[:2] / media_id[2:4]
    assert (on_disk / media_id[4:]).read_bytes() == payload


# bridge_db -------------------------------------------------------------------

EXPECTED_PRIMARY_KEYS = {
    "portal": ["bridge_id", "id", "receiver"],
    "ghost": ["bridge_id", "id"],
    "message": ["rowid"],
    "reaction": ["bridge_id", "room_receiver", "message_id", "message_part_id",
                 "sender_id", "emoji_id"],
    "user_login": ["bridge_id", "id"],
    "user": ["bridge_id", "mxid"],
    "user_portal": ["bridge_id", "user_mxid", "login_id", "portal_id", "portal_receiver"],
    "disappearing_message": ["bridge_id", "mxid"],
}


def key_columns(conn: psycopg.Connection, table: str, kind: str) -> list[list[str]]:
    """Columns of each constraint of ``kind`` ('p' primary, 'u' unique, 'f' foreign)."""
    rows = conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c"
        " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
        " WHERE c.conrelid = %s::regclass AND c.contype = %s"
        " GROUP BY c.oid ORDER BY c.conname",
        (f'public."{table}"', kind),
    ).fetchall()
    return [list(cols) for (cols,) in rows]


def test_bridge_tables_have_documented_primary_keys(bridge_db: str) -> None:
    with psycopg.connect(bridge_db) as conn:
        for table, columns in EXPECTED_PRIMARY_KEYS.items():
            assert key_columns(conn, table, "p") == [columns], table


def test_bridge_message_uniques_and_foreign_keys(bridge_db: str) -> None:
    with psycopg.connect(bridge_db) as conn:
        assert key_columns(conn, "message", "u") == [
            ["bridge_id", "mxid"],
            ["bridge_id", "room_receiver", "id", "part_id"],
            ["bridge_id", "room_receiver", "send_txn_id"],
        ]
        assert sorted(key_columns(conn, "message", "f")) == [
            ["bridge_id", "room_id", "room_receiver"], ["bridge_id", "sender_id"],
        ]


def test_bridge_helpers_insert_linked_rows(bridge_db: str) -> None:
    with psycopg.connect(bridge_db) as conn:
        add_portal(conn, "120363@g.us", "!room:archive.test", "Family")
        add_ghost(conn, "4917012345", "Anna")
        add_ghost(conn, "lid-99", "Bert", identifiers=["tel:+4917099"])
        add_message(conn, "120363@g.us:4917012345@s.whatsapp.net:3EB0", "$ev",
                    "120363@g.us", "4917012345", "@whatsapp_4917012345:archive.test",
                    1_700_000_000_000_000_000)
        row = conn.execute(
            "SELECT p.mxid, g.name, g.identifiers FROM message m"
            " JOIN portal p ON (p.bridge_id, p.id, p.receiver)"
            "   = (m.bridge_id, m.room_id, m.room_receiver)"
            " JOIN ghost g ON (g.bridge_id, g.id) = (m.bridge_id, m.sender_id)"
            " WHERE m.mxid = '$ev'"
        ).fetchone()
        assert row == ("!room:archive.test", "Anna", None)
        stored = conn.execute("SELECT identifiers FROM ghost WHERE id = 'lid-99'").fetchone()
        assert stored == (["tel:+4917099"],)
