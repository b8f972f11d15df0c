"""Bot mode's login: one device across restarts, soft logout repaired, hard logout raised."""
from __future__ import annotations

import logging
import stat
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.sources.matrix_sync.client import MatrixSyncClient
from mxarchiverd.sources.matrix_sync.errors import HardLogout
from mxarchiverd.sources.matrix_sync.filters import first_sync_filter
from mxarchiverd.sources.matrix_sync.session import LoginAction, load_session, session_path
from tests.support.nio_driver import NioDriver, bot_settings, list_devices, register_bot, unique
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse


@pytest.fixture
def admin(synapse: SynapseServer, tmp_path: Path):
    driver = NioDriver.register(synapse, unique("admin"), tmp_path / "drivers", admin=True)
    yield driver
    driver.close()


def test_ten_restarts_keep_one_device(synapse: SynapseServer, admin: NioDriver, tmp_path: Path) -> None:
    user_id, password = register_bot(synapse, unique("bot_restarts"))
    settings = bot_settings(synapse, user_id, password, tmp_path / "state")
    actions, devices, since = [], set(), None
    for _ in range(10):
        with MatrixSyncClient.open(settings) as client:
            actions.append(client.login_action)
            assert client.whoami()["device_id"] == client.device_id
            since = client.sync(since, 0, first_sync_filter()).next_batch
            devices.add(client.device_id)
    assert actions == [LoginAction.PASSWORD] + [LoginAction.RESTORE] * 9
    assert len(devices) == 1
    assert list_devices(synapse, admin, user_id) == sorted(devices)
    path = session_path(settings.state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_session(path).device_id in devices


def test_soft_logout_logs_in_again_on_the_same_device(
        synapse: SynapseServer, admin: NioDriver, synapse_db: psycopg.Connection, tmp_path: Path) -> None:
    user_id, password = register_bot(synapse, unique("bot_soft"))
    settings = bot_settings(synapse, user_id, password, tmp_path / "state")
    with MatrixSyncClient.open(settings) as client:  # logs in, uses the token for nothing
        device, first_token = client.device_id, client.nio.access_token
    # Expire the token the way a session lifetime would; Synapse then answers
    # M_UNKNOWN_TOKEN with soft_logout: true (the token was never looked up, so
    # no cache holds it).
    assert synapse_db.execute("UPDATE access_tokens SET valid_until_ms = 1 WHERE token = %s",
                              (first_token,)).rowcount == 1
    with MatrixSyncClient.open(settings) as client:
        assert client.login_action is LoginAction.RESTORE
        assert client.whoami()["device_id"] == device
        assert client.stats.soft_logouts == 1
        assert client.device_id == device and client.nio.access_token != first_token
    saved = load_session(session_path(settings.state_dir))
    assert saved.device_id == device and saved.access_token != first_token
    assert list_devices(synapse, admin, user_id) == [device]


def test_hard_logout_raises_and_never_makes_a_new_device(
        synapse: SynapseServer, admin: NioDriver, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user_id, password = register_bot(synapse, unique("bot_hard"))
    settings = bot_settings(synapse, user_id, password, tmp_path / "state")
    with MatrixSyncClient.open(settings) as client:
        token, device = client.nio.access_token, client.device_id
        client.whoami()
        admin.admin("DELETE", f"/_synapse/admin/v2/users/{user_id}/devices/{device}")
        with pytest.raises(HardLogout) as raised:
            client.whoami()
    with MatrixSyncClient.open(settings) as client:
        assert client.login_action is LoginAction.RESTORE
        with pytest.raises(HardLogout):
            client.sync(None, 0, first_sync_filter())
    assert list_devices(synapse, admin, user_id) == []
    message = str(raised.value)
    assert "M_UNKNOWN_TOKEN" in message and device in message
    for secret in (token, password, settings.pickle_key):
        assert secret not in message
        assert secret not in caplog.text
