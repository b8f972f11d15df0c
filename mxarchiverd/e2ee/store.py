"""The persistent crypto store: nio's SqliteStore under the state directory, keyed by a secret.

Layout of ``CryptoSettings.state_dir``:

| path                        | holds                                             | mode |
|-----------------------------|---------------------------------------------------|------|
| ``crypto/``                 | nio's SqliteStore ``<user>_<device>.db``          | 0700 |
| ``cross_signing.sealed``    | the three cross-signing private keys, AES-GCM     | 0600 |

One SQLite file (SqliteStore), not nio's DefaultStore: that one keeps device
trust in plaintext side files beside the database.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nio import AsyncClient, AsyncClientConfig

NIO_DEFAULT_PICKLE_KEY = "DEFAULT_KEY"
# A client that must never talk to a homeserver (command-line key import).
OFFLINE_HOMESERVER = "http://offline.invalid"
# The store DB mode uses when no bot device exists: it only ever holds imported keys.
KEYRING_USER, KEYRING_DEVICE = "@mxarchiverd-keyring:offline.invalid", "KEYRING"
MIN_PICKLE_KEY_CHARS = 16
STORE_DIR_MODE = 0o700


class CryptoStoreError(RuntimeError):
    """The crypto store cannot be used as configured; the message says why (never the key)."""


@dataclass(frozen=True)
class CryptoSettings:
    """What the crypto layer needs from the config; the lead maps config keys onto it."""

    state_dir: Path
    pickle_key: str = field(repr=False)
    # Only for user-interactive auth when resetting the cross-signing identity.
    password: str | None = field(default=None, repr=False)
    reset_identity: bool = False

    def __post_init__(self) -> None:
        check_pickle_key(self.pickle_key)

    @property
    def store_dir(self) -> Path:
        return self.state_dir / "crypto"

    @property
    def cross_signing_path(self) -> Path:
        return self.state_dir / "cross_signing.sealed"

    def store_file(self, user_id: str, device_id: str) -> Path:
        # nio's own naming (MatrixStore.__post_init__), so an existing store is found.
        return self.store_dir / f"{user_id}_{device_id}.db"


def check_pickle_key(pickle_key: object) -> None:
    if not isinstance(pickle_key, str) or not pickle_key:
        raise CryptoStoreError("pickle key: missing (set it, or its *_file form)")
    if pickle_key == NIO_DEFAULT_PICKLE_KEY:
        raise CryptoStoreError("pickle key: is nio's public default; choose a secret one")
    if len(pickle_key) < MIN_PICKLE_KEY_CHARS:
        raise CryptoStoreError(f"pickle key: {len(pickle_key)} characters, need at least "
                               f"{MIN_PICKLE_KEY_CHARS}")


def prepare_store_dir(settings: CryptoSettings) -> Path:
    """Create the store directory 0700 (the SQLite file inherits the umask, the directory guards it)."""
    directory = settings.store_dir
    directory.mkdir(mode=STORE_DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) != STORE_DIR_MODE:
        os.chmod(directory, STORE_DIR_MODE)
    return directory


def client_config(settings: CryptoSettings, **overrides: Any) -> AsyncClientConfig:
    """An AsyncClientConfig with the secret pickle key, SqliteStore and no sync-token storage.

    Sync tokens stay off: nio would save ``next_batch`` before the events are
    archived, so the archive keeps its own cursor (bot-mode-facts §2.3).
    """
    from nio import AsyncClientConfig
    from nio.store import SqliteStore

    options: dict[str, Any] = {"store": SqliteStore, "encryption_enabled": True,
                               "store_sync_tokens": False}
    options.update(overrides)
    return AsyncClientConfig(pickle_key=settings.pickle_key, **options)


def new_client(homeserver: str, user_id: str, settings: CryptoSettings,
               device_id: str | None = None, **config_overrides: Any) -> AsyncClient:
    """An AsyncClient whose crypto store lives under ``settings``; not yet logged in."""
    from nio import AsyncClient

    from mxarchiverd.e2ee.log_hygiene import protect_logs

    protect_logs(settings.pickle_key, settings.password)  # before login logs its answer
    prepare_store_dir(settings)
    return AsyncClient(homeserver, user_id, device_id=device_id,
                       store_path=str(settings.store_dir),
                       config=client_config(settings, **config_overrides))


def restore_session(client: AsyncClient, settings: CryptoSettings, user_id: str,
                    device_id: str, access_token: str, *, store_must_exist: bool = True) -> None:
    """Load the store of a device that logged in before (``restore_login``), or fail clearly.

    A missing store for a known device is refused: nio would create a new Olm
    account, so the device would present new identity keys and lose every
    Megolm session it had.
    """
    store_file = settings.store_file(user_id, device_id)
    if store_must_exist and not store_file.exists():
        raise CryptoStoreError(f"crypto store {store_file} is missing for device {device_id}; "
                               "restore it from a backup, or log in as a new device")
    from mxarchiverd.e2ee.log_hygiene import protect_logs

    protect_logs(settings.pickle_key, settings.password, access_token)
    prepare_store_dir(settings)
    try:
        client.restore_login(user_id, device_id, access_token)
    except Exception as exc:  # vodozemac raises its own ValueError subclasses, peewee others
        raise CryptoStoreError(f"crypto store {store_file} does not open with the configured "
                               f"pickle key ({type(exc).__name__}: wrong key or damaged "
                               "store)") from None
    if client.olm is None:
        raise CryptoStoreError(f"crypto store {store_file}: nio loaded no Olm machine "
                               "(is the e2e extra installed?)")


def open_offline(settings: CryptoSettings, user_id: str = KEYRING_USER,
                 device_id: str = KEYRING_DEVICE) -> AsyncClient:
    """A store opened without a login, for ``keys import`` beside (or without) a running bot.

    With the bot's user and device it opens the bot's own store: importing
    sessions writes only Megolm session rows, never the Olm account, so it is
    safe while the daemon runs (which then calls ``adopt_stored_sessions``).
    Without them it opens a keyring store that DB-mode archives decrypt with.
    """
    keyring = (user_id, device_id) == (KEYRING_USER, KEYRING_DEVICE)
    client = new_client(OFFLINE_HOMESERVER, user_id, settings, device_id=device_id)
    restore_session(client, settings, user_id, device_id, access_token="",
                    store_must_exist=not keyring)
    return client
