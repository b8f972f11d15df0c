"""A bot whose crypto store was lost gets its Megolm keys back from the server-side key backup.

The backup is set up the way an Element session of the bot account does it:
a secret storage key (shown as the recovery key), the backup's private key in
secret storage, the sessions uploaded as curve25519-aes-sha2 session_data.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import vodozemac

from mxarchiverd.e2ee.backup import BACKUP_ALGORITHM, BackupError, encrypt_session_data, restore_from_backup
from mxarchiverd.e2ee.ciphertext import Decrypted, Reason, Undecrypted, megolm_ref
from mxarchiverd.e2ee.log_hygiene import protect_logs
from mxarchiverd.e2ee.megolm import decrypt_archived, find_session, key_news
from mxarchiverd.e2ee.recovery_key import encode_recovery_key
from mxarchiverd.e2ee.secret_storage import encrypt_secret, key_description
from mxarchiverd.e2ee.signing import b64encode
from mxarchiverd.e2ee.store import CryptoSettings, new_client
from tests.support.e2ee_clients import Loop, NioUser, login_nio
from tests.support.matrix_client import MatrixClient
from tests.support.secret_guard import SecretGuard, secret_guard  # noqa: F401 (fixture)
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def put_account_data(http: MatrixClient, event_type: str, content: dict[str, Any]) -> None:
    path = f"/_matrix/client/v3/user/{quote(http.user_id, safe='')}/account_data/{event_type}"
    http.request("PUT", path, json=content)


def back_up_like_element(bot: NioUser, sessions: list[Any]) -> str:
    """Secret storage + a key backup holding ``sessions``; return the recovery key."""
    ssss_key, key_id = secrets.token_bytes(32), secrets.token_hex(8)
    put_account_data(bot.http, f"m.secret_storage.key.{key_id}", key_description(ssss_key))
    put_account_data(bot.http, "m.secret_storage.default_key", {"key": key_id})
    backup_key = vodozemac.Curve25519SecretKey()
    public = backup_key.public_key().to_base64()
    put_account_data(bot.http, "m.megolm_backup.v1", {"encrypted": {key_id: encrypt_secret(
        ssss_key, "m.megolm_backup.v1", b64encode(backup_key.to_bytes()).encode())}})
    version = bot.http.request("POST", "/_matrix/client/v3/room_keys/version", json={
        "algorithm": BACKUP_ALGORITHM, "auth_data": {"public_key": public}})["version"]
    rooms: dict[str, Any] = {}
    for session in sessions:
        data = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": session.sender_key,
                "sender_claimed_keys": {"ed25519": session.ed25519},
                "forwarding_curve25519_key_chain": session.forwarding_chain,
                "session_key": session.export_session(session.first_known_index)}
        rooms.setdefault(session.room_id, {"sessions": {}})["sessions"][session.id] = {
            "first_message_index": session.first_known_index, "forwarded_count": 0,
            "is_verified": False, "session_data": encrypt_session_data(public, data)}
    bot.http.request("PUT", f"/_matrix/client/v3/room_keys/keys?version={version}",
                     json={"rooms": rooms})
    return encode_recovery_key(ssss_key)


def test_a_new_device_restores_the_lost_stores_keys_with_the_recovery_key(
        loop: Loop, synapse: SynapseServer, tmp_path: Path, secret_guard: SecretGuard) -> None:
    name = secrets.token_hex(3)
    first_state = CryptoSettings(tmp_path / "lost-state", "pickle-" + secrets.token_hex(12))
    bot = login_nio(loop, synapse, f"bkbot_{name}",
                    client=new_client(synapse.base_url, synapse.user_id(f"bkbot_{name}"), first_state))
    alice = login_nio(loop, synapse, f"bkalice_{name}", store_dir=tmp_path / "alice")
    protect_logs(bot.client.access_token, alice.client.access_token)
    room = alice.create_encrypted_room(invite=[bot.user_id])
    bot.join(room)
    alice.wait_member(room, bot.user_id)
    event_id = alice.send_text(room, "kept in the backup")
    event = bot.raw_event(room, event_id)
    ref = megolm_ref(event)
    bot.sync_until(lambda r: ref in key_news(bot.client, r.to_device_events).arrived, "the room key")
    recovery_key = back_up_like_element(bot, [find_session(bot.client, ref)])
    for what, value in (("recovery key", recovery_key), ("pickle key", first_state.pickle_key),
                        ("bot token", bot.client.access_token), ("password", bot.password)):
        secret_guard.add(what, value)
    password = bot.password
    bot.close()  # ... and its state directory is gone

    second_state = CryptoSettings(tmp_path / "new-state", "pickle-" + secrets.token_hex(12))
    secret_guard.add("new pickle key", second_state.pickle_key)
    client = new_client(synapse.base_url, synapse.user_id(f"bkbot_{name}"), second_state)
    response = loop.run(client.login(password, device_name="bot after the loss"))
    protect_logs(client.access_token)
    secret_guard.add("new bot token", client.access_token)
    fresh = NioUser(loop, client, password, synapse.base_url)
    lost = decrypt_archived(fresh.client, event)
    assert isinstance(lost, Undecrypted) and lost.reason is Reason.UNKNOWN_SESSION

    with pytest.raises(BackupError) as wrong:
        loop.run(restore_from_backup(fresh.client, encode_recovery_key(secrets.token_bytes(32))))
    assert "not the key of secret storage" in str(wrong.value)
    restored = loop.run(restore_from_backup(fresh.client, recovery_key))
    assert restored.result.imported == [ref] and not restored.result.skipped
    outcome = decrypt_archived(fresh.client, event)
    assert isinstance(outcome, Decrypted) and outcome.content["body"] == "kept in the backup"
    assert response.device_id != bot.device_id
