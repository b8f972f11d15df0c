"""Real matrix-nio clients, driven synchronously, for tests of bot mode (a pytest plugin).

A `NioDriver` is one user with one device and its own nio store: it creates
rooms, sends (encrypted too, since nio's Olm machine is real), invites, kicks and
bans, and syncs with the housekeeping that nio's sync_forever does (to-device
messages, key upload, query and claim), so keys are really shared. Users are
registered through the Synapse fixture's shared-secret API and the driver reuses
that registration's device, so a driver adds no device of its own.

Fixtures: ``nio_alice`` (a NioDriver user on the shared Synapse) and
``bot_client`` (the archiver's MatrixSyncClient, logged in, with its own state
directory). Helpers: ``room_with_bot``, ``sync_plan``, ``ids``.
"""
from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from nio import AsyncClient, AsyncClientConfig, ErrorResponse, RoomPreset, SyncResponse
from nio.crypto import ENCRYPTION_ENABLED

from mxarchiverd.sources.matrix_sync.client import ClientSettings, MatrixSyncClient
from mxarchiverd.sources.matrix_sync.filters import first_sync_filter, sync_filter
from mxarchiverd.sources.matrix_sync.plan import PlanInputs, SyncPlan, plan_sync
from mxarchiverd.sources.matrix_sync.session import Credentials
from tests.support.synapse import SynapseServer

T = TypeVar("T")
CALL_TIMEOUT_S = 60.0


class NioCallFailed(RuntimeError):
    pass


class NioDriver:
    """A registered user behind a real nio AsyncClient on a private loop."""

    def __init__(self, base_url: str, user_id: str, device_id: str, access_token: str,
                 password: str | None, store_dir: Path) -> None:
        self.base_url, self.password = base_url, password
        self.loop = asyncio.new_event_loop()
        store_dir.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(store_sync_tokens=False, encryption_enabled=ENCRYPTION_ENABLED,
                                   pickle_key=secrets.token_hex(16), max_limit_exceeded=None)
        self.nio = AsyncClient(base_url, user_id, store_path=str(store_dir), config=config)
        self.nio.restore_login(user_id, device_id, access_token)

    @classmethod
    def register(cls, synapse: SynapseServer, localpart: str, store_dir: Path,
                 admin: bool = False, displayname: str | None = None) -> NioDriver:
        user = synapse.register(localpart, admin=admin, displayname=displayname)
        user.close()
        assert user.device_id, "registration returned no device"
        return cls(synapse.base_url, user.user_id, user.device_id, user.access_token,
                   user.password, store_dir / localpart)

    @property
    def user_id(self) -> str:
        return self.nio.user_id

    @property
    def access_token(self) -> str:
        return self.nio.access_token

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout_s))

    def _ok(self, response: T, what: str) -> T:
        if isinstance(response, ErrorResponse):
            raise NioCallFailed(f"{what}: {response}")
        return response

    # Rooms -----------------------------------------------------------------

    def create_room(self, name: str | None = None, invite: tuple[str, ...] = (),
                    encrypted: bool = False, preset: RoomPreset = RoomPreset.private_chat,
                    history_visibility: str | None = None) -> str:
        state: list[dict[str, Any]] = []
        if encrypted:
            state.append({"type": "m.room.encryption", "state_key": "",
                          "content": {"algorithm": "m.megolm.v1.aes-sha2"}})
        if history_visibility:
            state.append({"type": "m.room.history_visibility", "state_key": "",
                          "content": {"history_visibility": history_visibility}})
        reply = self._ok(self.run(self.nio.room_create(name=name, invite=invite, preset=preset,
                                                       initial_state=state)), "create room")
        self.sync_once()
        return reply.room_id

    def join(self, room_id: str) -> str:
        room = self._ok(self.run(self.nio.join(room_id)), f"join {room_id}").room_id
        self.sync_once()
        return room

    def invite(self, room_id: str, user_id: str) -> None:
        self._ok(self.run(self.nio.room_invite(room_id, user_id)), f"invite {user_id}")

    def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        self._ok(self.run(self.nio.room_kick(room_id, user_id, reason)), f"kick {user_id}")

    def ban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        self._ok(self.run(self.nio.room_ban(room_id, user_id, reason)), f"ban {user_id}")

    def unban(self, room_id: str, user_id: str) -> None:
        self._ok(self.run(self.nio.room_unban(room_id, user_id)), f"unban {user_id}")

    def leave(self, room_id: str) -> None:
        self._ok(self.run(self.nio.room_leave(room_id)), f"leave {room_id}")

    # Events ----------------------------------------------------------------

    def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        if room_id not in self.nio.rooms:
            self.sync_once()
        reply = self.run(self.nio.room_send(room_id, event_type, content,
                                            ignore_unverified_devices=True))
        return self._ok(reply, f"send {event_type}").event_id

    def send_text(self, room_id: str, body: str) -> str:
        return self.send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})

    def send_many(self, room_id: str, count: int, prefix: str = "message") -> list[str]:
        return [self.send_text(room_id, f"{prefix} {i}") for i in range(count)]

    def upload_encrypted(self, data: bytes, filename: str) -> dict[str, Any]:
        """Upload `data` encrypted (an E2EE attachment); content.file: key, iv, hashes, url, v."""
        import io

        from nio import UploadResponse

        response, keys = self.run(self.nio.upload(io.BytesIO(data), "application/octet-stream", filename,
                                                  encrypt=True, filesize=len(data)))
        if not isinstance(response, UploadResponse):
            raise NioCallFailed(f"upload: {response}")
        return {**keys, "url": response.content_uri}

    def export_keys(self, path: Path, passphrase: str) -> None:
        self.run(self.nio.export_keys(str(path), passphrase))

    def rotate_session(self, room_id: str) -> None:
        """Start a new Megolm session in the room (as senders do every so often)."""
        self.nio.invalidate_outbound_session(room_id)

    def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        return self._ok(self.run(self.nio.room_redact(room_id, event_id, reason)), "redact").event_id

    # Sync ------------------------------------------------------------------

    def sync_once(self, timeout_ms: int = 0) -> SyncResponse:
        """One sync plus sync_forever's housekeeping, in the same order it uses."""
        response = self._ok(self.run(self.nio.sync(timeout=timeout_ms, full_state=False)), "sync")
        self.run(self.nio.send_to_device_messages())
        if self.nio.should_upload_keys:
            self.run(self.nio.keys_upload())
        if self.nio.should_query_keys:
            self.run(self.nio.keys_query())
        if self.nio.should_claim_keys:
            self.run(self.nio.keys_claim(self.nio.get_users_for_key_claiming()))
        return response

    # Admin (the driver's token must be a server admin's) ---------------------

    def admin(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with httpx.Client(base_url=self.base_url, timeout=30.0,
                          headers={"Authorization": f"Bearer {self.access_token}"}) as http:
            response = http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise NioCallFailed(f"{method} {path} -> {response.status_code}: {response.text[:300]}")
        return response.json()

    def close(self) -> None:
        try:
            self.run(self.nio.close())
        finally:
            self.loop.close()


# The archiver's own account -------------------------------------------------


def register_bot(synapse: SynapseServer, localpart: str, admin: bool = False) -> tuple[str, str]:
    """(user id, password) of a new account with no device left behind by registration."""
    user = synapse.register(localpart, admin=admin)
    try:
        user.request("POST", "/_matrix/client/v3/logout", json={})
    finally:
        user.close()
    assert user.password is not None
    return user.user_id, user.password


def list_devices(synapse: SynapseServer, admin: NioDriver, user_id: str) -> list[str]:
    """The user's device ids, through the admin API (works when the user's own token is void)."""
    reply = admin.admin("GET", f"/_synapse/admin/v2/users/{user_id}/devices")
    return sorted(d["device_id"] for d in reply["devices"])


def unique(prefix: str) -> str:
    """A fresh localpart: the Synapse fixture is shared by the whole session."""
    return f"{prefix}_{secrets.token_hex(4)}"


def bot_settings(synapse: SynapseServer, user_id: str, password: str, state_dir: Path,
                 **overrides: Any) -> ClientSettings:
    return ClientSettings(Credentials(synapse.base_url, user_id, password, device_name="archiver"),
                          state_dir, pickle_key="test-pickle-" + "k" * 20, request_timeout_s=20,
                          **overrides)


@pytest.fixture
def nio_alice(synapse: SynapseServer, tmp_path: Path) -> Iterator[NioDriver]:
    driver = NioDriver.register(synapse, unique("alice"), tmp_path / "drivers")
    yield driver
    driver.close()


@pytest.fixture
def bot_client(synapse: SynapseServer, tmp_path: Path) -> Iterator[MatrixSyncClient]:
    user_id, password = register_bot(synapse, unique("bot"))
    with MatrixSyncClient.open(bot_settings(synapse, user_id, password, tmp_path / "state")) as client:
        yield client


def room_with_bot(sender: NioDriver, bot: MatrixSyncClient, **kwargs: Any) -> str:
    """A room `sender` creates and the bot joins."""
    room = sender.create_room(invite=(bot.user_id,), **kwargs)
    bot.join(room)
    return room


def sync_plan(bot: MatrixSyncClient, since: str | None, limit: int, known: Iterable[str],
              backfill: bool = False) -> SyncPlan:
    """One /sync of the bot (the first-sync filter when `since` is None), planned."""
    body = first_sync_filter() if since is None else sync_filter(limit)
    result = bot.sync(since, 0, body)
    return plan_sync(result.json, PlanInputs(since, bot.user_id, frozenset(known), lambda room: backfill))


def ids(events: Iterable[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]
