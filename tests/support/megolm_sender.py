"""An offline Megolm sender and an offline bot store, for tests that need no homeserver.

The sender is a real vodozemac outbound session; the bot is a real nio
AsyncClient whose SqliteStore is loaded with ``restore_session`` (no request is
ever sent: the homeserver address is never contacted).
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import vodozemac
from nio import AsyncClient

from mxarchiverd.e2ee.ciphertext import SessionRef
from mxarchiverd.e2ee.store import CryptoSettings, new_client, restore_session

ROOM = "!room:archive.test"
SENDER = "@alice:archive.test"
BOT = "@bot:archive.test"
PASSPHRASE = "correct horse battery staple"
PICKLE_KEY = "unit-test-pickle-key-0123456789"
UNREACHABLE = "http://127.0.0.1:9"


class MegolmSender:
    def __init__(self, room_id: str = ROOM) -> None:
        self.room_id = room_id
        self.session = vodozemac.GroupSession()
        self.inbound = vodozemac.InboundGroupSession(self.session.session_key)
        self.curve25519 = vodozemac.Curve25519SecretKey().public_key().to_base64()
        self.ed25519 = vodozemac.Account().ed25519_key.to_base64()
        self.events = 0

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def ref(self) -> SessionRef:
        return SessionRef(self.room_id, self.session_id)

    def export_entry(self, index: int = 0) -> dict[str, Any]:
        exported = self.inbound.export_at(index)
        assert exported is not None
        return {"algorithm": "m.megolm.v1.aes-sha2", "room_id": self.room_id,
                "session_id": self.session_id, "session_key": exported.to_base64(),
                "sender_key": self.curve25519, "sender_claimed_keys": {"ed25519": self.ed25519},
                "forwarding_curve25519_key_chain": []}

    def encrypt(self, content: dict[str, Any], event_type: str = "m.room.message",
                payload_room: str | None = None, **content_extra: Any) -> dict[str, Any]:
        """An ``m.room.encrypted`` event as the server would serve it."""
        payload = {"type": event_type, "content": content, "room_id": payload_room or self.room_id}
        ciphertext = self.session.encrypt(json.dumps(payload).encode()).to_base64()
        self.events += 1
        encrypted = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": self.curve25519,
                     "ciphertext": ciphertext, "session_id": self.session_id,
                     "device_id": "ALICEDEVICE", **content_extra}
        return {"type": "m.room.encrypted", "room_id": self.room_id, "sender": SENDER,
                "event_id": f"${secrets.token_hex(8)}", "origin_server_ts": 1_700_000_000_000
                + self.events, "content": {k: v for k, v in encrypted.items() if v is not None}}


def offline_bot(tmp_path: Path, existing: AsyncClient | None = None) -> AsyncClient:
    """A bot client with a loaded crypto store under ``tmp_path/bot``; ``existing`` reopens it."""
    settings = CryptoSettings(tmp_path / "bot", PICKLE_KEY)
    device = existing.device_id if existing is not None else "BOTDEVICE"
    client = new_client(UNREACHABLE, BOT, settings, device_id=device)
    restore_session(client, settings, BOT, device, "not-a-real-token",
                    store_must_exist=existing is not None)
    return client
