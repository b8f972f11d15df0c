"""Decrypt Matrix encrypted attachments (content.file, spec "Sending encrypted attachments").

The file on disk is AES-256-CTR ciphertext; `hashes.sha256` covers the ciphertext,
so it is verified while streaming and the plaintext only reaches `dst` once the
whole file matched (it is written beside `dst` and renamed). Errors name the
field that is wrong and never echo key material.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from mxarchiverd.media.errors import MediaRefused

DEFAULT_CHUNK = 1 << 20
_STANDARD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")


@dataclass(frozen=True)
class AttachmentKey:
    """The validated parts of content.file needed to decrypt and verify."""

    key: bytes = field(repr=False)
    iv: bytes
    ciphertext_sha256: bytes

    def __repr__(self) -> str:
        return f"AttachmentKey(key=***, iv={self.iv.hex()}, sha256={self.ciphertext_sha256.hex()})"


def parse_file_info(file_info: object) -> AttachmentKey:
    """Validate content.file (v2, A256CTR JWK, 16-byte iv, sha256 hash) into raw bytes."""
    info = _mapping(file_info, "file")
    if info.get("v") != "v2":
        raise MediaRefused(f"file.v: expected 'v2', got {_shown(info.get('v'))}")
    jwk = _mapping(info.get("key"), "file.key")
    _check_jwk(jwk)
    key = _b64(jwk.get("k"), "file.key.k", urlsafe=True, length=32)
    iv = _b64(info.get("iv"), "file.iv", urlsafe=False, length=16)
    hashes = _mapping(info.get("hashes"), "file.hashes")
    digest = _b64(hashes.get("sha256"), "file.hashes.sha256", urlsafe=False, length=32)
    return AttachmentKey(key, iv, digest)


def _check_jwk(jwk: Mapping[str, Any]) -> None:
    if jwk.get("kty") != "oct":
        raise MediaRefused(f"file.key.kty: expected 'oct', got {_shown(jwk.get('kty'))}")
    if jwk.get("alg") != "A256CTR":
        raise MediaRefused(f"file.key.alg: expected 'A256CTR', got {_shown(jwk.get('alg'))}")
    ops = jwk.get("key_ops", ["decrypt"])
    if not isinstance(ops, list) or "decrypt" not in ops:
        raise MediaRefused("file.key.key_ops: must be a list containing 'decrypt'")
    if jwk.get("ext", True) is not True:
        raise MediaRefused("file.key.ext: must be true")


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MediaRefused(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _b64(value: object, what: str, *, urlsafe: bool, length: int) -> bytes:
    """Decode unpadded base64 (padding tolerated) of an exact length."""
    if not isinstance(value, str):
        raise MediaRefused(f"{what}: expected a base64 string, got {type(value).__name__}")
    alphabet = _URLSAFE_B64 if urlsafe else _STANDARD_B64
    if not alphabet.fullmatch(value):
        kind = "base64url" if urlsafe else "base64"
        raise MediaRefused(f"{what}: not {kind} ({len(value)} characters)")
    try:
        raw = base64.b64decode(_padded(value), altchars=b"-_" if urlsafe else None, validate=True)
    except binascii.Error as exc:
        raise MediaRefused(f"{what}: malformed base64 ({exc})") from None
    if len(raw) != length:
        raise MediaRefused(f"{what}: decodes to {len(raw)} bytes, expected {length}")
    return raw


def _padded(value: str) -> str:
    stripped = value.rstrip("=")
    return stripped + "=" * (-len(stripped) % 4)


def decrypt_file(src: Path, dst: Path, file_info: dict[str, Any], chunk: int = DEFAULT_CHUNK) -> str:
    """Decrypt `src` into `dst`, verifying the ciphertext hash; return the plaintext sha256 hex.

    Memory stays at one chunk whatever the file size. On any failure `dst` is absent.
    """
    if chunk < 1:
        raise ValueError(f"decrypt_file chunk: expected a positive size, got {chunk}")
    attachment = parse_file_info(file_info)
    partial = dst.with_name(dst.name + ".partial")
    try:
        cipher_digest, plain_digest = _stream_decrypt(src, partial, attachment, chunk)
        if not hmac.compare_digest(cipher_digest, attachment.ciphertext_sha256):
            raise MediaRefused(f"ciphertext sha256 mismatch for {src}: expected "
                               f"{attachment.ciphertext_sha256.hex()}, got {cipher_digest.hex()}")
        os.replace(partial, dst)
    except BaseException:
        partial.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
        raise
    return plain_digest


def _stream_decrypt(src: Path, dst: Path, attachment: AttachmentKey, chunk: int) -> tuple[bytes, str]:
    decryptor = _cipher(attachment).decryptor()
    cipher_hash, plain_hash = hashlib.sha256(), hashlib.sha256()
    with open(src, "rb") as reader, open(dst, "wb") as writer:
        while block := reader.read(chunk):
            cipher_hash.update(block)
            plain = decryptor.update(block)
            plain_hash.update(plain)
            writer.write(plain)
        _finish(decryptor, plain_hash, writer)
    return cipher_hash.digest(), plain_hash.hexdigest()


def _finish(decryptor: CipherContext, plain_hash: Any, writer: Any) -> None:
    tail = decryptor.finalize()  # CTR is a stream mode: always empty, kept for form
    plain_hash.update(tail)
    writer.write(tail)


def _cipher(attachment: AttachmentKey) -> Cipher[modes.CTR]:
    # The 16-byte iv is the whole initial counter block (64-bit nonce, 64-bit counter).
    return Cipher(algorithms.AES(attachment.key), modes.CTR(attachment.iv))


def encrypt_for_test(plaintext: bytes, url: str | None = None) -> tuple[bytes, dict[str, Any]]:
    """Encrypt like a Matrix client does, for tests and fixtures: (ciphertext, content.file)."""
    key = os.urandom(32)
    iv = os.urandom(8) + bytes(8)  # counter half starts at zero, as v2 requires
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    file_info: dict[str, Any] = {
        "v": "v2",
        "key": {"kty": "oct", "alg": "A256CTR", "ext": True, "key_ops": ["encrypt", "decrypt"],
                "k": _unpadded(base64.urlsafe_b64encode(key))},
        "iv": _unpadded(base64.b64encode(iv)),
        "hashes": {"sha256": _unpadded(base64.b64encode(hashlib.sha256(ciphertext).digest()))},
    }
    if url is not None:
        file_info["url"] = url
    return ciphertext, file_info


def _unpadded(encoded: bytes) -> str:
    return encoded.decode("ascii").rstrip("=")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."
