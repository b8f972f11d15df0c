"""Recovery keys as users see them (spec appendices, "Cryptographic key representation").

``0x8B 0x01``, the 32 key bytes, and a parity byte (XOR of all the others),
in base58 (Bitcoin alphabet), spaced every four characters. Element calls the
secret storage key shown this way the "recovery key".
"""
from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
HEADER = bytes([0x8B, 0x01])
KEY_BYTES = 32


class RecoveryKeyError(ValueError):
    """Not a recovery key; the message says what is wrong, never the key itself."""


def _parity(data: bytes) -> int:
    parity = 0
    for byte in data:
        parity ^= byte
    return parity


def b58encode(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    digits = ""
    while number:
        number, rest = divmod(number, 58)
        digits = ALPHABET[rest] + digits
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * zeros + digits


def b58decode(text: str) -> bytes:
    number = 0
    for position, char in enumerate(text):
        if char not in _VALUE:
            raise RecoveryKeyError(f"recovery key: character {position + 1} is not base58")
        number = number * 58 + _VALUE[char]
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def encode_recovery_key(key: bytes) -> str:
    if len(key) != KEY_BYTES:
        raise RecoveryKeyError(f"recovery key: expected {KEY_BYTES} key bytes, got {len(key)}")
    data = HEADER + key
    text = b58encode(data + bytes([_parity(data)]))
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def decode_recovery_key(text: str) -> bytes:
    """The 32 key bytes of a recovery key; whitespace anywhere is ignored."""
    raw = b58decode("".join(text.split()))
    if len(raw) != len(HEADER) + KEY_BYTES + 1:
        raise RecoveryKeyError(f"recovery key: decodes to {len(raw)} bytes, expected "
                               f"{len(HEADER) + KEY_BYTES + 1} (mistyped or truncated?)")
    if raw[:2] != HEADER:
        raise RecoveryKeyError("recovery key: wrong header (not a Matrix recovery key)")
    if _parity(raw) != 0:
        raise RecoveryKeyError("recovery key: parity check failed (a character is mistyped)")
    return raw[2:-1]
