"""The Element key export file (spec: "Key exports"): decrypt it, and write one for tests.

Own implementation from the spec rather than nio's: nio's PBKDF2 runs a Python
callback per round (Element exports use 500,000 rounds), this uses hashlib's C
loop; and every failure here says what is wrong with the file without ever
showing the passphrase. The round count comes from the file, so it is capped:
a crafted file must not make the import spin for hours.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HEADER = "-----BEGIN MEGOLM SESSION DATA-----"
FOOTER = "-----END MEGOLM SESSION DATA-----"
VERSION = 1
MAX_ROUNDS = 10_000_000
_PREFIX = struct.Struct(">B16s16sI")  # version, salt, iv, rounds
_MAC_BYTES = 32


class KeyExportError(ValueError):
    """The file is not a readable key export, or the passphrase does not open it."""


def _keys(passphrase: str, salt: bytes, rounds: int) -> tuple[bytes, bytes]:
    derived = hashlib.pbkdf2_hmac("sha512", passphrase.encode("utf-8"), salt, rounds, 64)
    return derived[:32], derived[32:]


def _armoured_body(text: str, where: str) -> bytes:
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or lines[0] != HEADER:
        raise KeyExportError(f"{where}: not a key export (first line is not {HEADER})")
    if lines[-1] != FOOTER:
        raise KeyExportError(f"{where}: truncated key export (last line is not {FOOTER})")
    body = "".join(lines[1:-1])
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyExportError(f"{where}: the body between the header lines is not base64") from None


def decrypt_key_export(text: str, passphrase: str, where: str) -> list[Any]:
    """The sessions (a JSON array of ExportedSessionData) inside an export file's text."""
    raw = _armoured_body(text, where)
    if len(raw) < _PREFIX.size + _MAC_BYTES:
        raise KeyExportError(f"{where}: too short to be a key export ({len(raw)} bytes)")
    version, salt, iv, rounds = _PREFIX.unpack_from(raw)
    if version != VERSION:
        raise KeyExportError(f"{where}: export format version {version}, only {VERSION} exists")
    if not 1 <= rounds <= MAX_ROUNDS:
        raise KeyExportError(f"{where}: {rounds} PBKDF2 rounds, outside 1..{MAX_ROUNDS}")
    aes_key, mac_key = _keys(passphrase, salt, rounds)
    signed, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(hmac.new(mac_key, signed, hashlib.sha256).digest(), mac):
        raise KeyExportError(f"{where}: wrong passphrase, or the file was altered (HMAC mismatch)")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).decryptor()
    plain = decryptor.update(signed[_PREFIX.size:]) + decryptor.finalize()
    return _session_list(plain, where)


def _session_list(plain: bytes, where: str) -> list[Any]:
    try:
        sessions = json.loads(plain)
    except ValueError:
        raise KeyExportError(f"{where}: decrypted content is not JSON") from None
    if not isinstance(sessions, list):
        raise KeyExportError(f"{where}: decrypted content is a {type(sessions).__name__}, "
                             "expected a list of sessions")
    return sessions


def encrypt_key_export(sessions: list[Any], passphrase: str, rounds: int = 100_000) -> str:
    """An export file's text for ``sessions``, as the spec builds it (tests and fixtures)."""
    salt = os.urandom(16)
    iv = bytearray(os.urandom(16))
    iv[8] &= 0x7F  # bit 63 clear: AES-CTR implementations disagree on the carry out of it
    aes_key, mac_key = _keys(passphrase, salt, rounds)
    encryptor = Cipher(algorithms.AES(aes_key), modes.CTR(bytes(iv))).encryptor()
    body = json.dumps(sessions).encode()
    signed = _PREFIX.pack(VERSION, salt, bytes(iv), rounds) + encryptor.update(body) + encryptor.finalize()
    encoded = base64.b64encode(signed + hmac.new(mac_key, signed, hashlib.sha256).digest()).decode()
    lines = [encoded[i:i + 96] for i in range(0, len(encoded), 96)]
    return "\n".join([HEADER, *lines, FOOTER]) + "\n"
