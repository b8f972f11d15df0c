"""The bot's cross-signing identity on a real Synapse: bootstrapped once, never silently replaced."""
from __future__ import annotations

import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mxarchiverd.e2ee.cross_signing import (
    CrossSigningError, bootstrap_cross_signing, query_own_keys,
)
from mxarchiverd.e2ee.cross_signing_keys import CrossSigningKeys, load_keys
from mxarchiverd.e2ee.cross_signing_plan import BootstrapPlan, CrossSigningConflict, single_ed25519
from mxarchiverd.e2ee.log_hygiene import protect_logs
from mxarchiverd.e2ee.signing import has_valid_signature
from mxarchiverd.e2ee.store import CryptoSettings, new_client, restore_session
from tests.support.e2ee_clients import Loop, NioUser, login_nio
from tests.support.secret_guard import SecretGuard, secret_guard  # noqa: F401 (fixture)
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
UPLOADS = ("/keys/upload", "/keys/device_signing/upload", "/keys/signatures/upload")


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def settings_for(tmp_path: Path, **changes: Any) -> CryptoSettings:
    return CryptoSettings(tmp_path / "bot-state", changes.pop("pickle_key", PICKLE_KEY), **changes)


PICKLE_KEY = "cross-signing-test-pickle-key-" + secrets.token_hex(8)


def start_bot(loop: Loop, synapse: SynapseServer, localpart: str,
              settings: CryptoSettings) -> NioUser:
    client = new_client(synapse.base_url, synapse.user_id(localpart), settings)
    bot = login_nio(loop, synapse, localpart, client=client)
    protect_logs(bot.client.access_token)  # what the session layer does after a login
    return bot


def restart(loop: Loop, synapse: SynapseServer, bot: NioUser, settings: CryptoSettings) -> NioUser:
    user_id, device_id, token = bot.user_id, bot.device_id, bot.client.access_token
    bot.close()
    client = new_client(synapse.base_url, user_id, settings, device_id=device_id)
    restore_session(client, settings, user_id, device_id, token)
    return NioUser(loop, client, bot.password, synapse.base_url)


def record_requests(bot: NioUser) -> list[str]:
    """Note the path of every request the client sends (it still goes to Synapse)."""
    paths: list[str] = []
    real_send = bot.client.send

    async def noting(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        paths.append(path)
        return await real_send(method, path, *args, **kwargs)

    bot.client.send = noting  # type: ignore[method-assign]
    return paths


def guard_bot(guard: SecretGuard, bot: NioUser, settings: CryptoSettings) -> None:
    guard.add("pickle key", settings.pickle_key)
    guard.add("bot password", bot.password)
    guard.add("bot access token", bot.client.access_token)


def guard_keys(guard: SecretGuard, keys: CrossSigningKeys | None) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from mxarchiverd.e2ee.signing import b64encode
    assert keys is not None
    for name in ("master", "self_signing", "user_signing"):
        raw = getattr(keys, name).private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        guard.add(f"{name} private key", b64encode(raw))


def test_first_start_publishes_a_cross_signed_device_and_a_second_start_uploads_nothing(
        loop: Loop, synapse: SynapseServer, tmp_path: Path, secret_guard: SecretGuard) -> None:
    settings = settings_for(tmp_path)
    bot = start_bot(loop, synapse, "xsbot_first", settings)
    guard_bot(secret_guard, bot, settings)
    result = loop.run(bootstrap_cross_signing(bot.client, settings))
    assert result.plan.generate and result.plan.upload_keys
    guard_keys(secret_guard, load_keys(settings.cross_signing_path, PICKLE_KEY, bot.user_id))
    assert stat.S_IMODE(settings.cross_signing_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.store_dir.stat().st_mode) == 0o700

    observer = login_nio(loop, synapse, "xs_observer", store_dir=tmp_path / "observer")
    seen = observer.http.request("POST", "/_matrix/client/v3/keys/query",
                                 json={"device_keys": {bot.user_id: []}})
    master = seen["master_keys"][bot.user_id]
    ssk = seen["self_signing_keys"][bot.user_id]
    device = seen["device_keys"][bot.user_id][bot.device_id]
    assert single_ed25519(master, "master") == result.master_key
    assert single_ed25519(ssk, "ssk") == result.self_signing_key
    device_ed25519 = bot.client.olm.account.identity_keys["ed25519"]
    assert has_valid_signature(device, bot.user_id, f"ed25519:{result.self_signing_key}",
                               result.self_signing_key), "device signed by self-signing key"
    assert has_valid_signature(ssk, bot.user_id, f"ed25519:{result.master_key}", result.master_key)
    # Synapse shows signatures on a master key only to the user who made them.
    own = loop.run(query_own_keys(bot.client))
    assert has_valid_signature(own["master_keys"][bot.user_id], bot.user_id,
                               f"ed25519:{bot.device_id}", device_ed25519), "master signed by device"
    assert bot.user_id in own["user_signing_keys"], "the owner also sees the user-signing key"

    bot = restart(loop, synapse, bot, settings)
    before = loop.run(query_own_keys(bot.client))
    requests = record_requests(bot)
    second = loop.run(bootstrap_cross_signing(bot.client, settings))
    assert second.plan == BootstrapPlan() and second.master_key == result.master_key
    assert requests and not [p for p in requests if any(u in p for u in UPLOADS)], requests
    assert loop.run(query_own_keys(bot.client)) == before
    bot.close()
    observer.close()


def replace_master_key_elsewhere(bot: NioUser) -> CrossSigningKeys:
    """Another client resets the bot's identity (password UIA, as Element does)."""
    other = CrossSigningKeys.generate(bot.user_id)
    path = "/_matrix/client/v3/keys/device_signing/upload"
    response = bot.http.http.post(path, json=other.upload_body())
    assert response.status_code == 401, response.text
    auth = {"type": "m.login.password", "session": response.json()["session"],
            "password": bot.password, "identifier": {"type": "m.id.user", "user": bot.user_id}}
    bot.http.request("POST", path, json={**other.upload_body(), "auth": auth})
    return other


def test_a_master_key_replaced_elsewhere_is_an_alarm_and_reset_needs_the_password(
        loop: Loop, synapse: SynapseServer, tmp_path: Path, secret_guard: SecretGuard) -> None:
    settings = settings_for(tmp_path)
    bot = start_bot(loop, synapse, "xsbot_conflict", settings)
    guard_bot(secret_guard, bot, settings)
    ours = loop.run(bootstrap_cross_signing(bot.client, settings))
    theirs = replace_master_key_elsewhere(bot)

    requests = record_requests(bot)
    with pytest.raises(CrossSigningConflict) as alarm:
        loop.run(bootstrap_cross_signing(bot.client, settings))
    assert theirs.master_public in str(alarm.value) and ours.master_key in str(alarm.value)
    assert not [p for p in requests if any(u in p for u in UPLOADS)], "an alarm uploads nothing"
    server_master = loop.run(query_own_keys(bot.client))["master_keys"][bot.user_id]
    assert single_ed25519(server_master, "master") == theirs.master_public

    without_password = settings_for(tmp_path, reset_identity=True)
    with pytest.raises(CrossSigningError, match="password"):
        loop.run(bootstrap_cross_signing(bot.client, without_password))
    reset = settings_for(tmp_path, reset_identity=True, password=bot.password)
    again = loop.run(bootstrap_cross_signing(bot.client, reset))
    assert again.plan.replaces_server_keys
    assert again.master_key not in (ours.master_key, theirs.master_public), "a reset makes new keys"
    query = loop.run(query_own_keys(bot.client))
    assert single_ed25519(query["master_keys"][bot.user_id], "master") == again.master_key
    device = query["device_keys"][bot.user_id][bot.device_id]
    assert has_valid_signature(device, bot.user_id, f"ed25519:{again.self_signing_key}",
                               again.self_signing_key)
    sealed = load_keys(settings.cross_signing_path, PICKLE_KEY, bot.user_id)
    assert sealed is not None and sealed.master_public == again.master_key
    assert loop.run(bootstrap_cross_signing(bot.client, settings)).plan == BootstrapPlan()
    bot.close()


def test_lost_local_keys_with_keys_on_the_server_is_an_alarm(
        loop: Loop, synapse: SynapseServer, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    bot = start_bot(loop, synapse, "xsbot_lost", settings)
    loop.run(bootstrap_cross_signing(bot.client, settings))
    settings.cross_signing_path.unlink()
    with pytest.raises(CrossSigningConflict, match="holds no cross-signing keys"):
        loop.run(bootstrap_cross_signing(bot.client, settings))
    assert not settings.cross_signing_path.exists(), "no new keys were generated"
    bot.close()
