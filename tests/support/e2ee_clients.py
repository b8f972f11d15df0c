"""Real matrix-nio clients with real Megolm, driven synchronously, for E2EE tests.

One :class:`Loop` (a private asyncio loop) runs every client of a test. After
each sync :meth:`NioUser.sync` runs the production housekeeping
(``mxarchiverd.e2ee.housekeeping``: what nio's ``sync_forever`` does and a hand
loop must copy, bot-mode-facts §2.3); without it no key is ever shared.
"""
from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from nio import (
    AsyncClient, AsyncClientConfig, LoginResponse, RoomSendResponse, SyncResponse, UploadResponse,
)

from mxarchiverd.e2ee.housekeeping import run_housekeeping
from tests.support.matrix_client import MatrixClient
from tests.support.synapse import SynapseServer
from tests.support.waiting import wait_for

T = TypeVar("T")
REQUEST_TIMEOUT_S = 60
SENDER_PICKLE_KEY = "sender-store-pickle-key-for-tests"


class Loop:
    """A private event loop; ``run`` blocks on one coroutine with a deadline."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.users: list[NioUser] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = REQUEST_TIMEOUT_S) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout_s))

    def close(self) -> None:
        """Close every client still open (a failed test leaves some), then the loop."""
        for user in self.users:
            user.close()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class NioUser:
    def __init__(self, loop: Loop, client: AsyncClient, password: str, base_url: str) -> None:
        self.loop, self.client, self.password = loop, client, password
        self.http = MatrixClient(base_url, client.user_id, client.access_token, client.device_id)
        self.closed = False
        loop.users.append(self)

    @property
    def user_id(self) -> str:
        return self.client.user_id

    @property
    def device_id(self) -> str:
        return self.client.device_id

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = REQUEST_TIMEOUT_S) -> T:
        return self.loop.run(coro, timeout_s)

    def sync(self, timeout_ms: int = 0, housekeeping: bool = True) -> SyncResponse:
        response = self.run(self.client.sync(timeout=timeout_ms, full_state=False))
        assert isinstance(response, SyncResponse), f"{self.user_id} sync failed: {response}"
        if housekeeping:
            self.run(run_housekeeping(self.client))
        return response

    def sync_until(self, condition: Callable[[SyncResponse], T | None], what: str,
                   timeout_s: float = 30) -> T:
        """Sync (long-polling briefly) until ``condition(response)`` is truthy."""
        return wait_for(lambda: condition(self.sync(timeout_ms=500)), timeout_s, what, interval_s=0)

    def create_encrypted_room(self, invite: list[str] | None = None) -> str:
        room_id = self.http.create_room(name=f"e2ee {uuid.uuid4().hex[:6]}", encrypted=True,
                                        invite=invite)
        self.sync_until(lambda _: room_id in self.client.rooms and
                        self.client.rooms[room_id].encrypted, f"{room_id} to be known encrypted")
        return room_id

    def join(self, room_id: str) -> None:
        self.http.join(room_id)
        self.sync_until(lambda _: room_id in self.client.rooms, f"{self.user_id} in {room_id}")

    def wait_member(self, room_id: str, user_id: str) -> None:
        self.sync_until(lambda _: user_id in self.client.rooms[room_id].users,
                        f"{user_id} to show as a member of {room_id}")

    def send(self, room_id: str, content: dict[str, Any],
             event_type: str = "m.room.message") -> str:
        response = self.run(self.client.room_send(room_id, event_type, content,
                                                  ignore_unverified_devices=True))
        assert isinstance(response, RoomSendResponse), f"send failed: {response}"
        return response.event_id

    def send_text(self, room_id: str, body: str) -> str:
        return self.send(room_id, {"msgtype": "m.text", "body": body})

    def upload_encrypted(self, data: bytes, filename: str) -> dict[str, Any]:
        """Upload ``data`` encrypted; return content.file (key, iv, hashes, url, v)."""
        response, keys = self.run(self.client.upload(io.BytesIO(data), "application/octet-stream",
                                                     filename, encrypt=True, filesize=len(data)))
        assert isinstance(response, UploadResponse), f"upload failed: {response}"
        return {**keys, "url": response.content_uri}

    def export_keys(self, path: Path, passphrase: str) -> None:
        self.run(self.client.export_keys(str(path), passphrase))

    def raw_event(self, room_id: str, event_id: str) -> dict[str, Any]:
        """The event as the server serves it (ciphertext for encrypted rooms)."""
        return self.http.request("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/event/{_q(event_id)}")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.run(self.client.close())
            self.http.close()


def _q(part: str) -> str:
    from urllib.parse import quote
    return quote(part, safe="")


def drop_registration_device(registered: MatrixClient) -> None:
    """Log out the device the admin registration made, so a nio login is the only device."""
    registered.request("POST", "/_matrix/client/v3/logout", json={})
    registered.close()


def login_nio(loop: Loop, synapse: SynapseServer, localpart: str, client: AsyncClient | None = None,
              store_dir: Path | None = None) -> NioUser:
    """Register ``localpart`` and log in with nio (a new device with a fresh crypto store).

    Pass ``client`` to use one built elsewhere (the bot's, from mxarchiverd.e2ee.store);
    otherwise a sender client is made with its own store under ``store_dir``.
    """
    registered = synapse.register(localpart)
    password = registered.password
    drop_registration_device(registered)
    if client is None:
        assert store_dir is not None
        store_dir.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False,
                                   pickle_key=SENDER_PICKLE_KEY)
        client = AsyncClient(synapse.base_url, registered.user_id, store_path=str(store_dir),
                             config=config)
    response = loop.run(client.login(password, device_name=f"{localpart} test device"))
    assert isinstance(response, LoginResponse), f"login of {localpart} failed: {response}"
    user = NioUser(loop, client, password, synapse.base_url)
    user.sync()  # first sync + key upload, so others can share keys with this device
    return user
