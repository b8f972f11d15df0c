"""Recovery keys (appendices' key representation) and SSSS aes-hmac-sha2, both directions."""
from __future__ import annotations

import base64
import os

import pytest

from mxarchiverd.e2ee.backup import BackupError, backup_private_key, default_key_id
from mxarchiverd.e2ee.recovery_key import (
    ALPHABET, RecoveryKeyError, b58decode, b58encode, decode_recovery_key, encode_recovery_key,
)
from mxarchiverd.e2ee.secret_storage import (
    SecretStorageError, check_key, decrypt_secret, encrypt_secret, key_description,
)
from mxarchiverd.e2ee.signing import b64encode


def test_a_recovery_key_round_trips_in_groups_of_four() -> None:
    key = os.urandom(32)
    text = encode_recovery_key(key)
    groups = text.split(" ")
    assert all(len(g) == 4 for g in groups[:-1]) and set("".join(groups)) <= set(ALPHABET)
    assert decode_recovery_key(text) == key
    assert decode_recovery_key("\n  " + text.replace(" ", "\t") + " ") == key


def test_the_encoding_follows_the_appendix_byte_layout() -> None:
    key = bytes(range(32))
    raw = b58decode(encode_recovery_key(key).replace(" ", ""))
    parity = 0
    for byte in raw[:-1]:
        parity ^= byte
    assert raw[:2] == b"\x8b\x01" and raw[2:-1] == key and raw[-1] == parity


def test_base58_keeps_leading_zero_bytes() -> None:
    for raw in (b"", b"\0", b"\0\0\x01", b"\xff" * 5, os.urandom(35)):
        assert b58decode(b58encode(raw)) == raw
    assert b58encode(b"\0\0\x01") == "112"


def test_a_mistyped_character_fails_the_parity_or_length_check() -> None:
    text = encode_recovery_key(bytes(range(32)))  # fixed, so the outcome is too
    for position in (5, 10, 30, len(text) - 1):
        replacement = "2" if text[position] != "2" else "3"
        with pytest.raises(RecoveryKeyError) as refused:
            decode_recovery_key(text[:position] + replacement + text[position + 1:])
        assert "mistyped" in str(refused.value) or "header" in str(refused.value)
        assert text not in str(refused.value)


@pytest.mark.parametrize("text,why", [
    ("EsT0 abcd", "not base58"),  # '0' is not in the alphabet
    ("EsTc", "decodes to"),
    (b58encode(b"\x8b\x02" + bytes(32) + bytes([0x8B ^ 0x02])), "wrong header"),
])
def test_strings_that_are_not_recovery_keys(text: str, why: str) -> None:
    with pytest.raises(RecoveryKeyError, match=why):
        decode_recovery_key(text)


def test_a_secret_round_trips_and_only_the_right_key_and_name_open_it() -> None:
    key = os.urandom(32)
    encrypted = encrypt_secret(key, "m.megolm_backup.v1", b"the backup key")
    assert base64.b64decode(encrypted["iv"] + "==")[8] & 0x80 == 0, "bit 63 of the iv is clear"
    assert decrypt_secret(key, "m.megolm_backup.v1", encrypted) == b"the backup key"
    with pytest.raises(SecretStorageError, match="MAC mismatch"):
        decrypt_secret(os.urandom(32), "m.megolm_backup.v1", encrypted)
    with pytest.raises(SecretStorageError, match="MAC mismatch"):
        decrypt_secret(key, "m.cross_signing.master", encrypted)
    padded = {k: v + "=" * (-len(v) % 4) for k, v in encrypted.items()}
    assert decrypt_secret(key, "m.megolm_backup.v1", padded) == b"the backup key"
    with pytest.raises(SecretStorageError, match="lacks 'mac'"):
        decrypt_secret(key, "x", {"iv": encrypted["iv"], "ciphertext": encrypted["ciphertext"]})


def test_the_key_description_tells_the_right_key_from_a_wrong_one() -> None:
    key = os.urandom(32)
    description = key_description(key)
    check_key(key, description, "kid")
    with pytest.raises(SecretStorageError, match="not the key of secret storage kid"):
        check_key(os.urandom(32), description, "kid")
    check_key(os.urandom(32), {"algorithm": description["algorithm"]}, "kid")  # no iv/mac: presumed
    with pytest.raises(SecretStorageError, match="not supported"):
        check_key(key, {**description, "algorithm": "m.secret_storage.v2"}, "kid")


def test_the_backup_private_key_comes_out_of_secret_storage() -> None:
    ssss, backup_key = os.urandom(32), os.urandom(32)
    secret = {"encrypted": {"kid": encrypt_secret(ssss, "m.megolm_backup.v1",
                                                  b64encode(backup_key).encode())}}
    assert default_key_id({"key": "kid"}) == "kid"
    assert backup_private_key(ssss, "kid", key_description(ssss), secret) == backup_key
    with pytest.raises(BackupError, match="not the key of secret storage"):
        backup_private_key(os.urandom(32), "kid", key_description(ssss), secret)
    with pytest.raises(BackupError, match="not encrypted with the default key other"):
        backup_private_key(ssss, "other", key_description(ssss), secret)
    with pytest.raises(BackupError, match="names no key"):
        default_key_id({})
