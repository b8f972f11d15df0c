"""The bot's three cross-signing keys: generate, seal to disk, build the objects the server stores.

Master signs the other two; self-signing signs the bot's devices; user-signing
would sign other users (the bot never verifies anyone, but clients expect the
set to be complete). The private halves live only in a sealed 0600 file
(:mod:`mxarchiverd.e2ee.sealed_file`), never in logs or reprs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mxarchiverd.e2ee.sealed_file import SealedFileError, read_private, seal, unseal, write_private
from mxarchiverd.e2ee.signing import b64decode, b64encode, public_key_b64, sign_json

JsonDict = dict[str, Any]
PURPOSE = "cross-signing-keys"
USAGES = ("master", "self_signing", "user_signing")


@dataclass(frozen=True)
class CrossSigningKeys:
    user_id: str
    master: Ed25519PrivateKey = field(repr=False)
    self_signing: Ed25519PrivateKey = field(repr=False)
    user_signing: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, user_id: str) -> CrossSigningKeys:
        return cls(user_id, Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(),
                   Ed25519PrivateKey.generate())

    @property
    def master_public(self) -> str:
        return public_key_b64(self.master)

    @property
    def self_signing_public(self) -> str:
        return public_key_b64(self.self_signing)

    @property
    def user_signing_public(self) -> str:
        return public_key_b64(self.user_signing)

    def upload_body(self) -> JsonDict:
        """The body of ``POST /keys/device_signing/upload`` (without ``auth``)."""
        master = key_object(self.user_id, "master", self.master_public)
        master_id = f"ed25519:{self.master_public}"
        return {
            "master_key": master,
            "self_signing_key": sign_json(key_object(self.user_id, "self_signing",
                                                     self.self_signing_public),
                                          self.user_id, master_id, self.master),
            "user_signing_key": sign_json(key_object(self.user_id, "user_signing",
                                                     self.user_signing_public),
                                          self.user_id, master_id, self.master),
        }


def key_object(user_id: str, usage: str, public_key: str) -> JsonDict:
    """A CrossSigningKey object as the spec defines it (unsigned)."""
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public_key}": public_key}}


def _seed(key: Ed25519PrivateKey) -> str:
    return b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def _from_seed(text: object, where: str) -> Ed25519PrivateKey:
    raw = b64decode(text if isinstance(text, str) else "", where)
    if len(raw) != 32:
        raise SealedFileError(f"{where}: expected a 32-byte Ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(raw)


def save_keys(path: Path, keys: CrossSigningKeys, pickle_key: str) -> None:
    plain = {"user_id": keys.user_id, "master": _seed(keys.master),
             "self_signing": _seed(keys.self_signing), "user_signing": _seed(keys.user_signing)}
    write_private(path, seal(json.dumps(plain).encode(), pickle_key, PURPOSE))


def load_keys(path: Path, pickle_key: str, user_id: str) -> CrossSigningKeys | None:
    """The keys sealed at ``path``, or None when there is no such file."""
    if not path.exists():
        return None
    plain = json.loads(unseal(read_private(path), pickle_key, PURPOSE, str(path)))
    if plain.get("user_id") != user_id:
        raise SealedFileError(f"{path}: holds the cross-signing keys of {plain.get('user_id')!r}, "
                              f"not of {user_id!r}")
    return CrossSigningKeys(user_id, *(_from_seed(plain.get(u), f"{path}: {u}") for u in USAGES))
