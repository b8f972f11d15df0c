"""Encrypted rooms in bot mode, end to end: a real Synapse, a real nio sender with real Megolm.

Everything is archived as it arrives; what decrypts is stored as plaintext (the
ciphertext kept in `event`), what does not is stored as ciphertext and listed
pending until its key comes: here through `mxarchiverd keys import`, which also
decrypts the same room's ciphertext in an archive written by DB mode.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from mxarchiverd import cli
from tests.integration.test_archive_synapse import wait_bound_covers
from tests.support.nio_driver import NioDriver, list_devices, register_bot, unique
from tests.support.pipeline import (
    archived, bot_pipeline, pipeline, run_uploader_until_idle, write_bot_config, write_config,
)
from tests.support.postgres import PgServer
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
PASSPHRASE = "correct horse battery staple, exported"
PICKLE_KEY = "bot-pickle-key-for-tests-0123"  # write_bot_config's


def rows_of(dsn: str, room: str) -> dict[str, dict[str, Any]]:
    return {e: r for e, r in archived(dsn).items() if r["room_id"] == room}


def pending(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT event_id, reason FROM pending_decryption").fetchall())


def own_keys(synapse: SynapseServer, token: str, user_id: str) -> dict[str, Any]:
    reply = httpx.post(f"{synapse.base_url}/_matrix/client/v3/keys/query", json={"device_keys": {user_id: []}},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
    reply.raise_for_status()
    return reply.json()


def test_encrypted_rooms_are_archived_as_plaintext_and_late_keys_decrypt_in_place(
        synapse: SynapseServer, pg_server: PgServer, tmp_path: Path, nio_alice: NioDriver,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bot_id, bot_password = register_bot(synapse, unique("archiver"))
    room = nio_alice.create_room(name="secret plans", encrypted=True)
    before_invite = nio_alice.send_text(room, "sent before the bot was invited")
    nio_alice.invite(room, bot_id)
    archive = pg_server.create_database("bot_e2ee")
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, archive,
                              f"rooms:\n  - room_id: '{room}'\n")

    with bot_pipeline(config) as p:
        p.run_until(lambda: before_invite in rows_of(archive, room), what="the room's history")
        bot_device = p.poller.source.client.device_id  # type: ignore[attr-defined]
        bot_token = p.poller.source.client.nio.access_token  # type: ignore[attr-defined]
        nio_alice.sync_once()  # alice learns the bot's device, so she shares her next session with it
        # nio goes on with a session it shared before the bot joined; Element shares it with new
        # devices, nio must start a new one.
        nio_alice.rotate_session(room)
        text = nio_alice.send_text(room, "meet at the old mill")
        reply = nio_alice.send(room, "m.room.message", {"msgtype": "m.text", "body": "I'll be there",
                                                        "m.relates_to": {"m.in_reply_to": {"event_id": text}}})
        edit = nio_alice.send(room, "m.room.message", {
            "msgtype": "m.text", "body": "* meet at the new mill",
            "m.new_content": {"msgtype": "m.text", "body": "meet at the new mill"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": text}})
        reaction = nio_alice.send(room, "m.reaction", {"m.relates_to": {"rel_type": "m.annotation",
                                                                        "event_id": reply, "key": "👍"}})
        oops = nio_alice.send_text(room, "the code is 1234")
        redaction = nio_alice.redact(room, oops, reason="secret")
        photo, doc = os.urandom(3000), b"%PDF-1.4 minutes " * 500
        image = nio_alice.send(room, "m.room.message", {"msgtype": "m.image", "body": "map.png",
                                                        "file": nio_alice.upload_encrypted(photo, "map.png"),
                                                        "info": {"mimetype": "image/png"}})
        document = nio_alice.send(room, "m.room.message", {"msgtype": "m.file", "body": "minutes.pdf",
                                                           "file": nio_alice.upload_encrypted(doc, "minutes.pdf"),
                                                           "info": {"mimetype": "application/pdf"}})
        sent = [text, reply, edit, reaction, oops, redaction, image, document]
        p.run_until(lambda: set(sent) <= set(rows_of(archive, room)), what="the encrypted conversation")
        p.run_until_caught_up()
    run_uploader_until_idle(config)

    rows = rows_of(archive, room)
    assert rows[text]["event_type"] == "m.room.message", (pending(archive), rows[text]["content"])
    assert rows[text]["content"]["body"] == "meet at the new mill" and rows[text]["edited_at"] is not None
    assert rows[text]["event_type"] == "m.room.message" and rows[text]["encrypted"]
    assert rows[text]["event"]["type"] == "m.room.encrypted"  # the ciphertext is kept
    assert rows[reply]["reply_to_event_id"] == text
    assert (rows[reaction]["event_type"], rows[reaction]["reaction_key"]) == ("m.reaction", "👍")
    assert rows[oops]["redacted"]
    with psycopg.connect(archive) as conn:
        stored = dict(conn.execute("SELECT event_id, sha256 FROM archived_media WHERE media_kind = 'file'").fetchall())
    assert stored[image] == hashlib.sha256(photo).hexdigest() and stored[document] == hashlib.sha256(doc).hexdigest()
    # Sent before the bot was invited: no key, so ciphertext, pending.
    assert rows[before_invite]["event_type"] == "m.room.encrypted"
    assert pending(archive) == {before_invite: "unknown_session"}
    # The bot's device is cross-signed by its own self-signing key.
    keys = own_keys(synapse, bot_token, bot_id)
    [ssk] = keys["self_signing_keys"][bot_id]["keys"].values()
    assert f"ed25519:{ssk}" in keys["device_keys"][bot_id][bot_device]["signatures"][bot_id]

    from mxarchiverd import status

    [counts] = [r for r in status.collect(config).encrypted_rooms if r["room_id"] == room]
    assert counts["waiting"] == {"unknown_session": 1}
    assert counts["decrypted"] == sum(r["encrypted"] and r["event_type"] != "m.room.encrypted" for r in rows.values())
    assert counts["encrypted"] == 2  # the message sent before the invite, and the redacted one
    # Alice's key export makes the early message readable: decrypted in place, no new row.
    export, passphrase_file = tmp_path / "alice-keys.txt", tmp_path / "passphrase"
    nio_alice.export_keys(export, PASSPHRASE)
    passphrase_file.write_text(PASSPHRASE)
    count = len(rows_of(archive, room))
    assert cli.main(["--config", str(config.path), "keys", "import", str(export),
                     "--passphrase-file", str(passphrase_file)]) == 0
    after = rows_of(archive, room)
    assert len(after) == count and pending(archive) == {}
    assert after[before_invite]["content"]["body"] == "sent before the bot was invited"
    assert after[before_invite]["decrypted_at"] is not None

    # The same import decrypts the room's ciphertext in an archive DB mode wrote.
    db_archive = pg_server.create_database("db_e2ee")
    wait_bound_covers(synapse, document)
    (tmp_path / "db").mkdir()
    db_config = write_config(tmp_path / "db", synapse.db_dsn, db_archive, f"rooms:\n  - room_id: '{room}'\n"
                             f"matrix:\n  pickle_key: '{PICKLE_KEY}'\n  state_dir: {tmp_path / 'keyring'}\n")
    with pipeline(db_config) as p:
        p.run_until_caught_up()
    assert rows_of(db_archive, room)[text]["event_type"] == "m.room.encrypted"
    assert cli.main(["--config", str(db_config.path), "keys", "import", str(export),
                     "--passphrase-file", str(passphrase_file)]) == 0
    db_rows = rows_of(db_archive, room)
    assert db_rows[before_invite]["content"]["body"] == "sent before the bot was invited"
    assert db_rows[text]["content"]["body"] == "meet at the new mill"

    secrets = [PICKLE_KEY, PASSPHRASE, bot_password, bot_token]
    leaked = [r.getMessage() for r in caplog.records if any(s in r.getMessage() for s in secrets)]
    assert leaked == []


def test_after_a_restart_a_new_session_decrypts_with_one_device(
        synapse: SynapseServer, fresh_db: str, tmp_path: Path, nio_alice: NioDriver) -> None:
    bot_id, bot_password = register_bot(synapse, unique("archiver"))
    room = nio_alice.create_room(name="rotating", encrypted=True, invite=(bot_id,))
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              f"rooms:\n  - room_id: '{room}'\n")
    with bot_pipeline(config) as p:
        p.run_until_caught_up()
    nio_alice.sync_once()
    first = nio_alice.send_text(room, "before the restart")
    nio_alice.rotate_session(room)
    second = nio_alice.send_text(room, "a new session, after the restart")
    with bot_pipeline(config) as p:  # a new process would do the same: restore login and store
        p.run_until(lambda: {first, second} <= set(rows_of(fresh_db, room)), what="both messages")
    rows = rows_of(fresh_db, room)
    assert [rows[e]["content"].get("body") for e in (first, second)] == [
        "before the restart", "a new session, after the restart"]
    admin = NioDriver.register(synapse, unique("admin"), tmp_path / "admin", admin=True)
    try:
        assert len(list_devices(synapse, admin, bot_id)) == 1
    finally:
        admin.close()


def test_a_withheld_key_is_recorded_with_its_code_and_the_identity_is_not_uploaded_again(
        synapse: SynapseServer, fresh_db: str, tmp_path: Path, nio_alice: NioDriver) -> None:
    from mxarchiverd import status

    bot_id, bot_password = register_bot(synapse, unique("archiver"))
    room = nio_alice.create_room(name="refusals", encrypted=True, invite=(bot_id,))
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              f"rooms:\n  - room_id: '{room}'\n")
    with bot_pipeline(config) as p:
        p.run_until_caught_up()
        client = p.poller.source.client  # type: ignore[attr-defined]
        device, token = client.device_id, client.nio.access_token
        master = own_keys(synapse, token, bot_id)["master_keys"][bot_id]
        refusal = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": room, "session_id": "withheld-session-1",
                   "sender_key": nio_alice.nio.olm.account.identity_keys["curve25519"], "code": "m.unverified",
                   "reason": "Device not verified"}
        reply = httpx.put(f"{synapse.base_url}/_matrix/client/v3/sendToDevice/m.room_key.withheld/{unique('txn')}",
                          json={"messages": {bot_id: {device: refusal}}}, timeout=30,
                          headers={"Authorization": f"Bearer {nio_alice.access_token}"})
        reply.raise_for_status()

        def recorded() -> list[tuple[Any, ...]]:
            with psycopg.connect(fresh_db) as conn:
                return conn.execute("SELECT session_id, sender, code, reason FROM withheld_keys").fetchall()
        p.run_until(lambda: bool(recorded()), what="the refusal recorded")
    assert recorded() == [("withheld-session-1", nio_alice.user_id, "m.unverified", "Device not verified")]
    with bot_pipeline(config) as p:  # a second start: the same identity, nothing uploaded
        p.run_until_caught_up()
    assert own_keys(synapse, token, bot_id)["master_keys"][bot_id] == master
    assert status.collect(config).mode == "matrix_sync"


def test_keys_restored_from_the_bots_backup_decrypt_the_archive(
        synapse: SynapseServer, fresh_db: str, tmp_path: Path, nio_alice: NioDriver) -> None:
    from types import SimpleNamespace

    from tests.integration.test_bot_key_backup_restore import back_up_like_element
    from tests.support.matrix_client import MatrixClient

    bot_id, bot_password = register_bot(synapse, unique("archiver"))
    room = nio_alice.create_room(name="backed up", encrypted=True)
    early = nio_alice.send_text(room, "only the backup has this key")
    nio_alice.invite(room, bot_id)
    config = write_bot_config(tmp_path, synapse.base_url, bot_id, bot_password, fresh_db,
                              f"rooms:\n  - room_id: '{room}'\n")
    with bot_pipeline(config) as p:
        p.run_until(lambda: early in rows_of(fresh_db, room), what="the early message, as ciphertext")
        client = p.poller.source.client  # type: ignore[attr-defined]
        token, device = client.nio.access_token, client.device_id
    assert pending(fresh_db) == {early: "unknown_session"}
    # An Element session of the bot account backed up the key (here: alice's own copy of it).
    session_id = rows_of(fresh_db, room)[early]["content"]["session_id"]
    [session] = [s for by_key in nio_alice.nio.olm.inbound_group_store._entries[room].values()  # noqa: SLF001
                 for sid, s in by_key.items() if sid == session_id]
    http = MatrixClient(synapse.base_url, bot_id, token, device, bot_password)
    try:
        recovery_key = back_up_like_element(SimpleNamespace(http=http), [session])  # type: ignore[arg-type]
    finally:
        http.close()
    key_file = tmp_path / "recovery-key"
    key_file.write_text(recovery_key)
    assert cli.main(["--config", str(config.path), "keys", "restore-backup", "--recovery-key-file", str(key_file)]) == 0
    assert rows_of(fresh_db, room)[early]["content"]["body"] == "only the backup has this key"
    assert pending(fresh_db) == {}
