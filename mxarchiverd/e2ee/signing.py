"""Signing JSON objects with Ed25519 and checking signatures (spec appendices, "Signing Details").

A signature covers the canonical JSON of the object without ``signatures`` and
``unsigned``. Keys are ``cryptography`` Ed25519 objects; on the wire everything
is unpadded base64.
"""
from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mxarchiverd.e2ee.canonical_json import canonical_json

JsonDict = dict[str, Any]
UNSIGNED_PARTS = ("signatures", "unsigned")


def b64encode(raw: bytes) -> str:
    """Unpadded standard base64, the spec's encoding for keys and signatures."""
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def b64decode(text: str, what: str) -> bytes:
    """Decode base64 with or without padding; the error names ``what`` and never the value."""
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected a base64 string, got {type(text).__name__}")
    stripped = text.rstrip("=")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not valid base64 ({len(text)} characters)") from None


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    return b64encode(private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def signable_bytes(obj: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature of ``obj`` covers."""
    return canonical_json({k: v for k, v in obj.items() if k not in UNSIGNED_PARTS})


def sign_json(obj: Mapping[str, Any], signer: str, key_id: str,
              private_key: Ed25519PrivateKey) -> JsonDict:
    """Return a copy of ``obj`` with ``signatures[signer][key_id]`` added; other signatures stay."""
    signed = copy.deepcopy(dict(obj))
    signature = b64encode(private_key.sign(signable_bytes(signed)))
    signed.setdefault("signatures", {}).setdefault(signer, {})[key_id] = signature
    return signed


def signature_of(obj: Mapping[str, Any], signer: str, key_id: str) -> str | None:
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        return None
    by_signer = signatures.get(signer)
    if not isinstance(by_signer, Mapping):
        return None
    value = by_signer.get(key_id)
    return value if isinstance(value, str) else None


def has_valid_signature(obj: Mapping[str, Any], signer: str, key_id: str,
                        public_key: str) -> bool:
    """True when ``obj`` carries a signature by ``signer``/``key_id`` that verifies with the key."""
    signature = signature_of(obj, signer, key_id)
    if signature is None:
        return False
    try:
        verifier = Ed25519PublicKey.from_public_bytes(b64decode(public_key, "public key"))
        verifier.verify(b64decode(signature, "signature"), signable_bytes(obj))
    except (ValueError, InvalidSignature):
        return False
    return True
