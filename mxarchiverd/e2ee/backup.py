"""Restore Megolm keys from the bot user's server-side key backup with a recovery key.

For a bot whose crypto store was lost: the recovery key opens secret storage,
which holds the backup's private key (``m.megolm_backup.v1``); that decrypts
every backed-up session (``m.megolm_backup.v1.curve25519-aes-sha2``: ECDH,
HKDF, AES-CBC, and a MAC over the empty string, which vodozemac's PkDecryption
reproduces, bot-mode-facts §3.2). The sessions then go through the same import
as a key export, so the caller retries the archived events of ``decryptable``.

The backup holds only what a client of the bot user uploaded (for instance an
Element session of the bot account with secure backup on); nio uploads nothing.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mxarchiverd.e2ee.key_import import ImportResult, Progress, import_sessions
from mxarchiverd.e2ee.matrix_http import CLIENT_V3, MatrixRequestError, q, request_json
from mxarchiverd.e2ee.recovery_key import RecoveryKeyError, decode_recovery_key
from mxarchiverd.e2ee.secret_storage import SecretStorageError, check_key, decrypt_secret
from mxarchiverd.e2ee.signing import b64decode, b64encode

if TYPE_CHECKING:
    from nio import AsyncClient

JsonDict = dict[str, Any]
BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
BACKUP_SECRET = "m.megolm_backup.v1"
DEFAULT_KEY = "m.secret_storage.default_key"


class BackupError(RuntimeError):
    """The backup cannot be restored; the message says which step failed (never a key)."""


@dataclass(frozen=True)
class BackupRestore:
    version: str
    result: ImportResult


async def restore_from_backup(client: AsyncClient, recovery_key: str,
                              on_progress: Progress | None = None) -> BackupRestore:
    """Import every session of the current backup into the crypto store."""
    try:
        ssss_key = decode_recovery_key(recovery_key)
    except RecoveryKeyError as exc:
        raise BackupError(str(exc)) from None
    key_id = default_key_id(await _account_data(client, DEFAULT_KEY))
    description = await _account_data(client, f"m.secret_storage.key.{key_id}")
    private_key = backup_private_key(ssss_key, key_id, description,
                                     await _account_data(client, BACKUP_SECRET))
    version = await _current_version(client)
    decryption = backup_decryption(private_key, version)
    keys = await request_json(client, "GET",
                              f"{CLIENT_V3}/room_keys/keys?version={q(str(version['version']))}")
    entries, skipped = backed_up_sessions(decryption, keys)
    result = import_sessions(client, entries, on_progress)
    return BackupRestore(str(version["version"]), ImportResult(
        result.imported, result.already_held, skipped + result.skipped, len(entries) + len(skipped)))


async def _current_version(client: AsyncClient) -> JsonDict:
    try:
        return await request_json(client, "GET", f"{CLIENT_V3}/room_keys/version")
    except MatrixRequestError as exc:
        if exc.status == 404:
            raise BackupError("key backup: the server has no key backup for this user") from None
        raise


async def _account_data(client: AsyncClient, event_type: str) -> JsonDict:
    path = f"{CLIENT_V3}/user/{q(client.user_id)}/account_data/{q(event_type)}"
    try:
        return await request_json(client, "GET", path)
    except MatrixRequestError as exc:
        if exc.status == 404:
            raise BackupError(f"key backup: account data {event_type} is not set (no secret "
                              "storage set up for this user?)") from None
        raise


def default_key_id(default_key: Mapping[str, Any]) -> str:
    key_id = default_key.get("key")
    if not isinstance(key_id, str) or not key_id:
        raise BackupError(f"key backup: {DEFAULT_KEY} names no key")
    return key_id


def backup_private_key(ssss_key: bytes, key_id: str, description: Mapping[str, Any],
                       secret: Mapping[str, Any]) -> bytes:
    """The backup's private key from secret storage; checks the recovery key first."""
    encrypted = (secret.get("encrypted") or {}).get(key_id)
    if not isinstance(encrypted, Mapping):
        raise BackupError(f"key backup: {BACKUP_SECRET} is not encrypted with the default key "
                          f"{key_id}")
    try:
        check_key(ssss_key, description, key_id)
        plain = decrypt_secret(ssss_key, BACKUP_SECRET, encrypted)
        raw = b64decode(plain.decode("ascii", "replace").strip(), f"{BACKUP_SECRET} secret")
    except (SecretStorageError, ValueError) as exc:
        raise BackupError(f"key backup: {exc}") from None
    if len(raw) != 32:
        raise BackupError(f"key backup: the {BACKUP_SECRET} secret is {len(raw)} bytes, not 32")
    return raw


def backup_decryption(private_key: bytes, version: Mapping[str, Any]) -> Any:
    """A vodozemac PkDecryption, once the backup's public key is shown to match ours."""
    import vodozemac

    if version.get("algorithm") != BACKUP_ALGORITHM:
        raise BackupError(f"key backup: algorithm {version.get('algorithm')!r} is not supported")
    decryption = vodozemac.PkDecryption.from_key(vodozemac.Curve25519SecretKey.from_bytes(private_key))
    published = (version.get("auth_data") or {}).get("public_key")
    if decryption.public_key.to_base64() != published:
        raise BackupError(f"key backup: version {version.get('version')} was made with another "
                          "key than the one in secret storage; not trusting it")
    return decryption


def backed_up_sessions(decryption: Any, keys: Mapping[str, Any]) -> tuple[list[JsonDict], list[str]]:
    """ExportedSessionData for every decryptable backed-up session, and what was skipped."""
    entries, skipped = [], []
    for room_id, room in (keys.get("rooms") or {}).items():
        for session_id, backed_up in ((room or {}).get("sessions") or {}).items():
            try:
                data = decrypt_session_data(decryption, backed_up.get("session_data") or {})
            except BackupError as exc:
                skipped.append(f"{room_id} {session_id}: {exc}")
                continue
            entries.append({**data, "room_id": room_id, "session_id": session_id})
    return entries, skipped


def decrypt_session_data(decryption: Any, session_data: Mapping[str, Any]) -> JsonDict:
    import vodozemac

    try:
        # Named fields: Message.to_base64() returns them in another order than documented.
        message = vodozemac.Message.from_base64(session_data["ciphertext"], session_data["mac"],
                                                session_data["ephemeral"])
        data = json.loads(decryption.decrypt(message))
    except KeyError as exc:
        raise BackupError(f"session_data lacks {exc.args[0]!r}") from None
    except (ValueError, TypeError) as exc:
        raise BackupError(f"does not decrypt ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise BackupError("decrypts to something other than a session object")
    return data


def encrypt_session_data(public_key: str, data: Mapping[str, Any]) -> JsonDict:
    """A session_data object for ``public_key`` (what a backing-up client uploads; tests use it)."""
    import vodozemac

    encryption = vodozemac.PkEncryption.from_key(vodozemac.Curve25519PublicKey.from_base64(public_key))
    message = encryption.encrypt(json.dumps(data).encode())
    return {"ciphertext": b64encode(message.ciphertext), "mac": b64encode(message.mac),
            "ephemeral": b64encode(message.ephemeral_key)}
