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
from tests.integration.test_bot_gaps_and_history import alice, bot  # noqa: F401 - fixtures
from tests.support.nio_driver import NioDriver, unique
from tests.support.pg import free_port
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


def test_the_long_poll_ticks_and_can_be_stopped(bot: MatrixSyncClient) -> None:
    since = bot.sync(None, 0, first_sync_filter()).next_batch
    for _ in range(2):  # the first key upload is news to the next sync; let it pass
        since = bot.sync(since, 0, sync_filter(10)).next_batch
    ticks: list[float] = []
    bot.runner.tick, bot.runner.tick_interval_s = (lambda: ticks.append(time.monotonic()) and None), 0.2
    started = time.monotonic()
    bot.sync(since, 2000, sync_filter(10))  # nothing happens: the server holds it ~2 s
    assert time.monotonic() - started >= 1.5 and len(ticks) >= 5
    stop_after = len(ticks) + 3
    bot.runner.tick = lambda: ticks.append(time.monotonic()) or len(ticks) >= stop_after
    started = time.monotonic()
    with pytest.raises(Interrupted):
        bot.sync(since, 20000, sync_filter(10))
    assert time.monotonic() - started < 5
    assert bot.whoami()["user_id"] == bot.user_id  # still usable after the cancelled request


def test_a_forgotten_filter_is_uploaded_again(bot: MatrixSyncClient) -> None:
    body = sync_filter(5)
    first = bot.filter_id(body)
    assert bot.filter_id(body) == first  # reused, not uploaded again
    bot.filters.remember(bot.user_id, body, "987654321")  # an id the server never issued
    bot.sync(None, 0, body)
    assert bot.filters.get(bot.user_id, body) not in (None, "987654321")


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


def test_one_process_per_state_directory(bot: MatrixSyncClient) -> None:
    with pytest.raises(SessionFileError, match="in use"):
        MatrixSyncClient(bot.settings)


def test_rooms_the_bot_may_not_read_or_join(alice: NioDriver, bot: MatrixSyncClient) -> None:
    room = alice.create_room()
    with pytest.raises(Forbidden):
        bot.join(room)  # private, not invited
    with pytest.raises(NotInRoom):
        bot.messages(room, None)
    alice.invite(room, bot.user_id)
    assert bot.join(room) == room
    assert bot.room_version(room) == bot.state_event(room, "m.room.create")["room_version"]
    assert bot.state_event(room, "m.room.topic") is None


def test_nio_behind_the_client_gets_room_keys_from_its_syncs(alice: NioDriver, bot: MatrixSyncClient) -> None:
    """The seam for E2EE: raw JSON keeps the ciphertext, `.nio` decrypts with keys the syncs delivered."""
    room = alice.create_room(encrypted=True, invite=(bot.user_id,))
    bot.join(room)
    since = bot.sync(None, 0, first_sync_filter()).next_batch  # housekeeping uploads the device keys
    alice.sync_once()
    event_id = alice.send_text(room, "secret words")
    result = bot.sync(since, 5000, sync_filter(10))
    raw = [e for e in result.json["rooms"]["join"][room]["timeline"]["events"] if e["event_id"] == event_id]
    assert raw and raw[0]["type"] == "m.room.encrypted" and "secret words" not in str(raw)
    decrypted = [e for e in result.nio_response.rooms.join[room].timeline.events if e.event_id == event_id]
    assert getattr(decrypted[0], "body", None) == "secret words"
    assert result.housekeeping_problems == []
