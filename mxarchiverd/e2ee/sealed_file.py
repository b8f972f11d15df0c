"""Secrets at rest: AES-256-GCM under a key derived from the pickle key, in 0600 files.

The pickle key already protects nio's crypto store, so it also protects the
private keys nio does not hold (cross-signing). HKDF-SHA256 with a random salt
per file and a purpose string derives a fresh AES key, so the same secret never
keys two uses; the purpose is also the associated data, so a file sealed for
one purpose does not open as another. Errors name the file and never show key
material.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mxarchiverd.e2ee.signing import b64decode, b64encode

FORMAT = "mxarchiverd-sealed-v1"
SALT_BYTES = 16
NONCE_BYTES = 12
PRIVATE_MODE = 0o600


class SealedFileError(RuntimeError):
    """A sealed file is missing, unreadable, too open, or does not open with the secret."""


def _derive(secret: str, salt: bytes, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                info=f"mxarchiverd/{purpose}".encode())
    return hkdf.derive(secret.encode("utf-8"))


def seal(plaintext: bytes, secret: str, purpose: str) -> bytes:
    """Encrypt ``plaintext`` into the JSON envelope written to disk."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(_derive(secret, salt, purpose)).encrypt(nonce, plaintext, purpose.encode())
    envelope = {"format": FORMAT, "purpose": purpose, "kdf": "HKDF-SHA256",
                "cipher": "AES-256-GCM", "salt": b64encode(salt), "nonce": b64encode(nonce),
                "ciphertext": b64encode(ciphertext)}
    return json.dumps(envelope, indent=1).encode()


def unseal(blob: bytes, secret: str, purpose: str, where: str) -> bytes:
    """Decrypt an envelope from :func:`seal`; ``where`` names it in errors."""
    envelope = _envelope(blob, where)
    if envelope.get("purpose") != purpose:
        raise SealedFileError(f"{where}: sealed for {envelope.get('purpose')!r}, expected {purpose!r}")
    try:
        salt = b64decode(envelope["salt"], f"{where}: salt")
        nonce = b64decode(envelope["nonce"], f"{where}: nonce")
        ciphertext = b64decode(envelope["ciphertext"], f"{where}: ciphertext")
        return AESGCM(_derive(secret, salt, purpose)).decrypt(nonce, ciphertext, purpose.encode())
    except KeyError as exc:
        raise SealedFileError(f"{where}: envelope lacks {exc.args[0]!r}") from None
    except ValueError as exc:
        raise SealedFileError(str(exc)) from None
    except InvalidTag:
        raise SealedFileError(f"{where}: does not open with the configured pickle key "
                              "(a different key, or the file was altered)") from None


def _envelope(blob: bytes, where: str) -> dict:
    try:
        envelope = json.loads(blob)
    except ValueError:
        raise SealedFileError(f"{where}: not a sealed file (not JSON)") from None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise SealedFileError(f"{where}: not a sealed file (format is not {FORMAT!r})")
    return envelope


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600, created that way (never wider)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private(path: Path) -> bytes:
    """Read a file written by :func:`write_private`, refusing one that others may read."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SealedFileError(f"{path}: mode {stat.S_IMODE(mode):04o} lets other users read "
                                  f"it; run chmod 600 {path}")
        return path.read_bytes()
    except OSError as exc:
        raise SealedFileError(f"{path}: cannot read ({exc.strerror})") from None
