"""What the bot's client does with each kind of answer from a real Synapse (or none at all)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from mxarchiverd.sources.matrix_sync.client import ClientSettings, MatrixSyncClient
from mxarchiverd.sources.matrix_sync.errors import (
    Forbidden, HomeserverUnavailable, Interrupted, LoginRejected, NotInRoom,
)
from mxarchiverd.sources.matrix_sync.filters import first_sync_filter, sync_filter
from mxarchiverd.sources.matrix_sync.session import (
    Credentials, LoginAction, SessionFileError, session_path,
)
from tests.support.nio_driver import NioDriver, unique
from tests.support.postgres import free_port
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
PICKLE = "pickle-" + "o" * 24


def test_a_homeserver_that_is_down_is_an_outage_not_a_crash(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = ClientSettings(Credentials(url, "@bot:archive.test", "secret-password"), tmp_path,
                              pickle_key=PICKLE, request_timeout_s=5)
    started = time.monotonic()
    with pytest.raises(HomeserverUnavailable) as raised:
        MatrixSyncClient.open(settings)
    assert time.monotonic() - started < 10
    assert "secret-password" not in str(raised.value)
    assert not session_path(tmp_path).exists()
    MatrixSyncClient(settings).close()  # the failed open released the state directory's lock


def test_the_long_poll_ticks_and_can_be_stopped(bot_client: MatrixSyncClient) -> None:
    since = bot_client.sync(None, 0, first_sync_filter()).next_batch
    for _ in range(2):  # the first key upload is news to the next sync; let it pass
        since = bot_client.sync(since, 0, sync_filter(10)).next_batch
    ticks: list[float] = []
    bot_client.runner.tick_interval_s = 0.2
    bot_client.runner.tick = lambda: ticks.append(time.monotonic()) and None
    started = time.monotonic()
    bot_client.sync(since, 2000, sync_filter(10))  # nothing happens: the server holds it ~2 s
    assert time.monotonic() - started >= 1.5 and len(ticks) >= 5
    stop_after = len(ticks) + 3
    bot_client.runner.tick = lambda: ticks.append(time.monotonic()) or len(ticks) >= stop_after
    started = time.monotonic()
    with pytest.raises(Interrupted):
        bot_client.sync(since, 20000, sync_filter(10))
    assert time.monotonic() - started < 5
    assert bot_client.whoami()["user_id"] == bot_client.user_id  # still usable after the cancelled request


def test_a_forgotten_filter_is_uploaded_again(bot_client: MatrixSyncClient) -> None:
    body = sync_filter(5)
    first = bot_client.filter_id(body)
    assert bot_client.filter_id(body) == first  # reused, not uploaded again
    bot_client.filters.remember(bot_client.user_id, body, "987654321")  # an id the server never issued
    bot_client.sync(None, 0, body)
    assert bot_client.filters.get(bot_client.user_id, body) not in (None, "987654321")


def test_a_configured_access_token_is_adopted_once(synapse: SynapseServer, tmp_path: Path) -> None:
    user = synapse.register(unique("tokenbot"))
    user.close()
    settings = ClientSettings(Credentials(synapse.base_url, access_token=user.access_token),
                              tmp_path, pickle_key=PICKLE)
    with MatrixSyncClient.open(settings) as client:
        assert client.login_action is LoginAction.ADOPT_TOKEN
        assert (client.user_id, client.device_id) == (user.user_id, user.device_id)
    with MatrixSyncClient.open(settings) as client:
        assert client.login_action is LoginAction.RESTORE
    bad = ClientSettings(Credentials(synapse.base_url, access_token="not-a-token-at-all"),
                         tmp_path / "bad", pickle_key=PICKLE)
    with pytest.raises(LoginRejected) as raised:
        MatrixSyncClient.open(bad)
    assert "not-a-token-at-all" not in str(raised.value)


def test_one_process_per_state_directory(bot_client: MatrixSyncClient) -> None:
    with pytest.raises(SessionFileError, match="in use"):
        MatrixSyncClient(bot_client.settings)


def test_rooms_the_bot_may_not_read_or_join(nio_alice: NioDriver, bot_client: MatrixSyncClient) -> None:
    room = nio_alice.create_room()
    with pytest.raises(Forbidden):
        bot_client.join(room)  # private, not invited
    with pytest.raises(NotInRoom):
        bot_client.messages(room, None)
    nio_alice.invite(room, bot_client.user_id)
    assert bot_client.join(room) == room
    assert bot_client.room_version(room) == bot_client.state_event(room, "m.room.create")["room_version"]
    assert bot_client.state_event(room, "m.room.topic") is None


def test_nio_behind_the_client_gets_room_keys_from_its_syncs(nio_alice: NioDriver,
                                                            bot_client: MatrixSyncClient) -> None:
    """The seam for E2EE: raw JSON keeps the ciphertext, `.nio` decrypts with keys the syncs delivered."""
    room = nio_alice.create_room(encrypted=True, invite=(bot_client.user_id,))
    bot_client.join(room)
    since = bot_client.sync(None, 0, first_sync_filter()).next_batch  # housekeeping uploads the device keys
    nio_alice.sync_once()
    event_id = nio_alice.send_text(room, "secret words")
    result = bot_client.sync(since, 5000, sync_filter(10))
    raw = [e for e in result.json["rooms"]["join"][room]["timeline"]["events"] if e["event_id"] == event_id]
    assert raw and raw[0]["type"] == "m.room.encrypted" and "secret words" not in str(raw)
    decrypted = [e for e in result.nio_response.rooms.join[room].timeline.events if e.event_id == event_id]
    assert getattr(decrypted[0], "body", None) == "secret words"
    assert result.housekeeping_problems == []
