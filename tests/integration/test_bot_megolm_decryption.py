"""Bot-mode Megolm on a real Synapse with a real nio sender: live, late, imported, after restart.

The bot's side is only mxarchiverd.e2ee (store, decrypt_archived, key_news,
import_key_file) over raw event JSON as the archive would hold it; the sender
is a stock nio client. Every test also runs under the secret guard: no pickle
key, passphrase, password or token in any log line.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mxarchiverd.e2ee.ciphertext import Decrypted, Reason, SessionRef, Undecrypted, megolm_ref
from mxarchiverd.e2ee.cross_signing import bootstrap_cross_signing
from mxarchiverd.e2ee.housekeeping import after_sync
from mxarchiverd.e2ee.key_import import import_key_file
from mxarchiverd.e2ee.log_hygiene import protect_logs
from mxarchiverd.e2ee.megolm import KeyNews, decrypt_archived, key_news
from mxarchiverd.e2ee.pending import PendingIndex
from mxarchiverd.e2ee.store import CryptoSettings, new_client, restore_session
from mxarchiverd.media.crypto import decrypt_file
from tests.support.e2ee_clients import Loop, NioUser, login_nio
from tests.support.secret_guard import SecretGuard, secret_guard  # noqa: F401 (fixture)
from tests.support.synapse import SynapseServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.synapse
PASSPHRASE = "export passphrase " + secrets.token_hex(6)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


class Pair:
    """A nio sender (alice) and the bot, each with its own store, in one encrypted room or more."""

    def __init__(self, loop: Loop, synapse: SynapseServer, tmp_path: Path, name: str,
                 guard: SecretGuard) -> None:
        self.loop, self.synapse, self.guard = loop, synapse, guard
        self.settings = CryptoSettings(tmp_path / "bot-state", "pickle-" + secrets.token_hex(12))
        client = new_client(synapse.base_url, synapse.user_id(f"bot_{name}"), self.settings)
        self.bot = login_nio(loop, synapse, f"bot_{name}", client=client)
        protect_logs(self.bot.client.access_token)
        self.alice = login_nio(loop, synapse, f"alice_{name}", store_dir=tmp_path / "alice")
        protect_logs(self.alice.client.access_token)
        for what, value in (("pickle key", self.settings.pickle_key), ("passphrase", PASSPHRASE),
                            ("bot token", self.bot.client.access_token),
                            ("alice token", self.alice.client.access_token),
                            ("bot password", self.bot.password),
                            ("alice password", self.alice.password)):
            guard.add(what, value)

    def shared_room(self) -> str:
        room = self.alice.create_encrypted_room(invite=[self.bot.user_id])
        self.bot.join(room)
        self.alice.wait_member(room, self.bot.user_id)
        return room

    def bot_event(self, room: str, event_id: str) -> dict[str, Any]:
        event = self.bot.raw_event(room, event_id)
        assert event["type"] == "m.room.encrypted", "the server serves ciphertext"
        return event

    def wait_key(self, ref: SessionRef, timeout_s: float = 30) -> KeyNews:
        """Sync as a stage does (after_sync: housekeeping, then the key news) until ``ref`` arrives."""
        def arrived() -> KeyNews | None:
            response = self.bot.sync(timeout_ms=500, housekeeping=False)
            news = self.loop.run(after_sync(self.bot.client, response))
            return news if ref in news.arrived else None
        return wait_for(arrived, timeout_s, f"the room key of {ref}", interval_s=0)

    def restart_bot(self) -> None:
        user_id, device_id, token = self.bot.user_id, self.bot.device_id, self.bot.client.access_token
        password = self.bot.password
        self.bot.close()
        client = new_client(self.synapse.base_url, user_id, self.settings, device_id=device_id)
        restore_session(client, self.settings, user_id, device_id, token)
        self.bot = NioUser(self.loop, client, password, self.synapse.base_url)


@pytest.fixture
def pair(loop: Loop, synapse: SynapseServer, tmp_path: Path, request: pytest.FixtureRequest,
         secret_guard: SecretGuard) -> Pair:
    return Pair(loop, synapse, tmp_path, request.node.name.split("_")[1] + secrets.token_hex(3),
                secret_guard)


def decrypted(outcome: Any) -> Decrypted:
    assert isinstance(outcome, Decrypted), outcome
    return outcome


def test_live_text_and_an_encrypted_file_decrypt_on_the_bot(pair: Pair, tmp_path: Path) -> None:
    pair.loop.run(bootstrap_cross_signing(pair.bot.client, pair.settings))
    room = pair.shared_room()
    text_id = pair.alice.send_text(room, "hello, archive")
    plaintext = secrets.token_bytes(70_000)
    file_info = pair.alice.upload_encrypted(plaintext, "report.bin")
    file_id = pair.alice.send(room, {"msgtype": "m.file", "body": "report.bin", "file": file_info})
    text_event = pair.bot_event(room, text_id)
    pair.wait_key(megolm_ref(text_event))

    text = decrypted(decrypt_archived(pair.bot.client, text_event))
    assert (text.event_type, text.content["body"]) == ("m.room.message", "hello, archive")
    file_event = decrypted(decrypt_archived(pair.bot.client, pair.bot_event(room, file_id)))
    assert file_event.content["msgtype"] == "m.file" and "url" not in file_event.content
    ciphertext = tmp_path / "download"
    ciphertext.write_bytes(pair.bot.http.download(file_event.content["file"]["url"]))
    assert hashlib.sha256(ciphertext.read_bytes()).hexdigest() != hashlib.sha256(plaintext).hexdigest()
    digest = decrypt_file(ciphertext, tmp_path / "plain", file_event.content["file"])
    assert digest == hashlib.sha256(plaintext).hexdigest()
    assert (tmp_path / "plain").read_bytes() == plaintext


def test_a_message_from_before_the_invite_is_pending_until_the_key_export_is_imported(
        pair: Pair, tmp_path: Path) -> None:
    room = pair.alice.create_encrypted_room()
    early_id = pair.alice.send_text(room, "said before the bot was invited")
    pair.alice.http.invite(room, pair.bot.user_id)
    pair.bot.join(room)
    early = pair.bot_event(room, early_id)
    outcome = decrypt_archived(pair.bot.client, early)
    assert isinstance(outcome, Undecrypted) and outcome.reason is Reason.UNKNOWN_SESSION
    pending = PendingIndex()
    pending.add(early_id, outcome.ref)
    assert pending.counts_by_room() == {room: 1}

    export = tmp_path / "alice-keys.txt"
    pair.alice.export_keys(export, PASSPHRASE)
    progress: list[tuple[int, int]] = []
    result = import_key_file(pair.bot.client, export, PASSPHRASE,
                             on_progress=lambda done, total: progress.append((done, total)))
    assert outcome.ref in result.imported and progress[-1][0] == progress[-1][1] == result.total
    [(ref, waiting)] = pending.waiting_for(result.decryptable)
    assert (ref, waiting) == (outcome.ref, [early_id])
    assert decrypted(decrypt_archived(pair.bot.client, early)).content["body"] == \
        "said before the bot was invited"


def share_later(alice: NioUser, room: str, bot: NioUser) -> tuple[dict[str, Any], Any]:
    """Make alice's next session in ``room`` reach nobody; return its m.room_key and the bot device."""
    client = alice.client
    alice.sync_until(lambda _: bot.device_id in client.device_store[bot.user_id],
                     "alice to know the bot's device")
    device = client.device_store[bot.user_id][bot.device_id]
    client.blacklist_device(device)  # also drops the room's current outbound session
    alice.run(client.share_group_session(room, ignore_unverified_devices=True))
    outbound = client.olm.outbound_group_sessions[room]
    key = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": room, "session_id": outbound.id,
           "session_key": outbound.session_key}  # exported before index 0 is used
    return key, device


def send_room_key(alice: NioUser, device: Any, key: dict[str, Any]) -> None:
    """The late m.room_key, Olm-encrypted to the bot's device, as any client sends it."""
    client = alice.client
    session = client.olm.session_store.get(device.curve25519)
    if session is None:
        alice.run(client.keys_claim({device.user_id: [device.id]}))
        session = client.olm.session_store.get(device.curve25519)
    assert session is not None, "no Olm session with the bot's device"
    olm_message = client.olm._olm_encrypt(session, device, "m.room_key", key)
    send_to_device(alice, "m.room.encrypted", device.user_id, device.id, olm_message)


def send_to_device(sender: NioUser, event_type: str, user_id: str, device_id: str,
                   content: dict[str, Any]) -> None:
    sender.http.request("PUT", f"/_matrix/client/v3/sendToDevice/{event_type}/{secrets.token_hex(8)}",
                        json={"messages": {user_id: {device_id: content}}})


def test_withheld_then_late_room_key_gives_the_record_then_the_plaintext(pair: Pair) -> None:
    room = pair.shared_room()
    key, device = share_later(pair.alice, room, pair.bot)
    late_id = pair.alice.send_text(room, "the key comes later")
    late = pair.bot_event(room, late_id)
    ref = megolm_ref(late)
    assert ref == SessionRef(room, key["session_id"])
    first = decrypt_archived(pair.bot.client, late)
    assert isinstance(first, Undecrypted) and first.reason is Reason.UNKNOWN_SESSION
    pending = PendingIndex()
    pending.add(late_id, ref)

    send_to_device(pair.alice, "m.room_key.withheld", pair.bot.user_id, pair.bot.device_id, {
        "algorithm": "m.megolm.v1.aes-sha2", "room_id": room, "session_id": ref.session_id,
        "sender_key": pair.alice.client.olm.account.identity_keys["curve25519"],
        "code": "m.unverified", "reason": "The sender disabled sending to unverified devices."})
    news = pair.bot.sync_until(lambda r: key_news(pair.bot.client, r.to_device_events).withheld and
                               key_news(pair.bot.client, r.to_device_events), "the withheld notice")
    [record] = news.withheld
    assert (record.ref, record.code, record.sender) == (ref, "m.unverified", pair.alice.user_id)
    withheld = decrypt_archived(pair.bot.client, late, withheld={record.ref: record})
    assert isinstance(withheld, Undecrypted) and withheld.reason is Reason.WITHHELD
    assert withheld.withheld_code == "m.unverified"

    send_room_key(pair.alice, device, key)
    arrived = pair.wait_key(ref).arrived
    [(unlocked, waiting)] = pending.waiting_for(arrived)
    assert (unlocked, waiting) == (ref, [late_id])
    assert decrypted(decrypt_archived(pair.bot.client, late,
                                      withheld={record.ref: record})).content["body"] == \
        "the key comes later"


def test_after_a_restart_a_rotated_session_decrypts_and_the_bot_has_one_device(pair: Pair) -> None:
    room = pair.shared_room()
    before_id = pair.alice.send_text(room, "before the restart")
    before = pair.bot_event(room, before_id)
    pair.wait_key(megolm_ref(before))
    assert decrypted(decrypt_archived(pair.bot.client, before)).content["body"] == "before the restart"

    pair.restart_bot()
    pair.alice.client.invalidate_outbound_session(room)  # the sender rotates its Megolm session
    after_id = pair.alice.send_text(room, "after the restart")
    after = pair.bot_event(room, after_id)
    assert megolm_ref(after) != megolm_ref(before), "a new Megolm session"
    pair.wait_key(megolm_ref(after))
    assert decrypted(decrypt_archived(pair.bot.client, after)).content["body"] == "after the restart"
    assert decrypted(decrypt_archived(pair.bot.client, before)).content["body"] == \
        "before the restart", "old sessions survive the restart"
    devices = pair.bot.http.request("GET", "/_matrix/client/v3/devices")["devices"]
    assert [d["device_id"] for d in devices] == [pair.bot.device_id]
