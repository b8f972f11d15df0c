"""Secret storage (SSSS), algorithm ``m.secret_storage.v1.aes-hmac-sha2`` (spec: Secrets module).

HKDF-SHA256 (salt: 32 zero bytes, info: the secret's name) gives an AES-CTR-256
key and an HMAC-SHA-256 key; the MAC covers the raw ciphertext. The key
description's ``iv``/``mac`` let a client tell a wrong key from damaged data:
it is the same scheme applied to 32 zero bytes under the empty name.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mxarchiverd.e2ee.signing import b64decode, b64encode

AES_HMAC_SHA2 = "m.secret_storage.v1.aes-hmac-sha2"
JsonDict = dict[str, Any]


class SecretStorageError(ValueError):
    """A secret does not open: wrong key, unknown algorithm, or damaged data (says which)."""


def _keys(key: bytes, name: str) -> tuple[bytes, bytes]:
    derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=bytes(32),
                   info=name.encode()).derive(key)
    return derived[:32], derived[32:]


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return cipher.update(data) + cipher.finalize()


def encrypt_secret(key: bytes, name: str, plaintext: bytes, iv: bytes | None = None) -> JsonDict:
    """An AesHmacSha2EncryptedData object (tests and setup; the bot only decrypts)."""
    aes_key, mac_key = _keys(key, name)
    if iv is None:
        fresh = bytearray(os.urandom(16))
        fresh[8] &= 0x7F  # bit 63 clear, as the spec asks
        iv = bytes(fresh)
    ciphertext = _ctr(aes_key, iv, plaintext)
    return {"iv": b64encode(iv), "ciphertext": b64encode(ciphertext),
            "mac": b64encode(hmac.new(mac_key, ciphertext, hashlib.sha256).digest())}


def decrypt_secret(key: bytes, name: str, encrypted: Mapping[str, Any]) -> bytes:
    try:
        iv = b64decode(encrypted["iv"], f"{name}: iv")
        ciphertext = b64decode(encrypted["ciphertext"], f"{name}: ciphertext")
        mac = b64decode(encrypted["mac"], f"{name}: mac")
    except KeyError as exc:
        raise SecretStorageError(f"{name}: encrypted data lacks {exc.args[0]!r}") from None
    except ValueError as exc:
        raise SecretStorageError(str(exc)) from None
    aes_key, mac_key = _keys(key, name)
    if not hmac.compare_digest(hmac.new(mac_key, ciphertext, hashlib.sha256).digest(), mac):
        raise SecretStorageError(f"{name}: MAC mismatch (wrong key, or the secret was altered)")
    return _ctr(aes_key, iv, ciphertext)


def key_description(key: bytes, name: str = "m.default") -> JsonDict:
    """An AesHmacSha2KeyDescription whose iv/mac check ``key``."""
    check = encrypt_secret(key, "", bytes(32))
    return {"name": name, "algorithm": AES_HMAC_SHA2, "iv": check["iv"], "mac": check["mac"]}


def check_key(key: bytes, description: Mapping[str, Any], key_id: str) -> None:
    """Raise :class:`SecretStorageError` unless ``key`` is the key ``description`` describes."""
    if description.get("algorithm") != AES_HMAC_SHA2:
        raise SecretStorageError(f"secret storage key {key_id}: algorithm "
                                 f"{description.get('algorithm')!r} is not supported")
    if "iv" not in description or "mac" not in description:
        return  # optional; without them every key is presumed right
    try:
        iv = b64decode(description["iv"], f"secret storage key {key_id}: iv")
        expected = b64decode(description["mac"], f"secret storage key {key_id}: mac")
    except ValueError as exc:
        raise SecretStorageError(str(exc)) from None
    check = encrypt_secret(key, "", bytes(32), iv=iv)
    if not hmac.compare_digest(b64decode(check["mac"], "mac"), expected):
        raise SecretStorageError(f"the recovery key is not the key of secret storage {key_id}")
