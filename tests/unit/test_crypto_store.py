"""The crypto store: a secret pickle key, nio's SqliteStore in a 0700 directory, clear refusals."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mxarchiverd.e2ee.store import CryptoSettings, CryptoStoreError, new_client, restore_session

USER, DEVICE = "@bot:archive.test", "BOTDEVICE"
KEY = "first-pickle-key-0123456789"
OFFLINE = "http://127.0.0.1:9"


def opened(settings: CryptoSettings, must_exist: bool = True):
    client = new_client(OFFLINE, USER, settings, device_id=DEVICE)
    restore_session(client, settings, USER, DEVICE, "token-not-used", store_must_exist=must_exist)
    return client


@pytest.mark.parametrize("key,why", [
    ("", "missing"), ("DEFAULT_KEY", "public default"), ("short", "at least 16"),
])
def test_weak_pickle_keys_are_refused_without_echoing_them(tmp_path: Path, key: str,
                                                           why: str) -> None:
    with pytest.raises(CryptoStoreError, match=why) as refused:
        CryptoSettings(tmp_path, key)
    assert not key or key not in str(refused.value)


def test_settings_never_show_their_secrets() -> None:
    settings = CryptoSettings(Path("/state"), KEY, password="hunter2-password")
    assert KEY not in repr(settings) and "hunter2" not in repr(settings)


def test_the_store_is_sqlite_in_a_0700_directory_and_reopens_with_the_same_identity(
        tmp_path: Path) -> None:
    settings = CryptoSettings(tmp_path / "state", KEY)
    first = opened(settings, must_exist=False)
    identity = first.olm.account.identity_keys
    assert settings.store_file(USER, DEVICE).is_file()
    assert stat.S_IMODE(settings.store_dir.stat().st_mode) == 0o700
    assert not list(settings.store_dir.glob("*.trusted_devices")), "SqliteStore, not DefaultStore"
    assert first.config.store_sync_tokens is False and first.config.pickle_key == KEY
    assert opened(settings).olm.account.identity_keys == identity


def test_a_wrong_pickle_key_is_a_clear_error_without_either_key(tmp_path: Path) -> None:
    opened(CryptoSettings(tmp_path / "state", KEY), must_exist=False)
    wrong = "other-pickle-key-0123456789"
    with pytest.raises(CryptoStoreError) as refused:
        opened(CryptoSettings(tmp_path / "state", wrong))
    message = str(refused.value)
    assert "does not open with the configured pickle key" in message
    assert KEY not in message and wrong not in message


def test_a_known_device_without_its_store_is_refused_not_given_new_keys(tmp_path: Path) -> None:
    settings = CryptoSettings(tmp_path / "state", KEY)
    with pytest.raises(CryptoStoreError, match="missing for device BOTDEVICE"):
        opened(settings)
    assert not settings.store_file(USER, DEVICE).exists()


def test_a_wide_state_directory_gets_a_private_store_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "crypto").mkdir(mode=0o755)
    opened(CryptoSettings(state, KEY), must_exist=False)
    assert stat.S_IMODE((state / "crypto").stat().st_mode) == 0o700
