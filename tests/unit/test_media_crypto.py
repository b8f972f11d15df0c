"""Encrypted attachments: streaming AES-256-CTR decryption with the ciphertext hash checked."""
from __future__ import annotations

import base64
import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest

from mxarchiverd.media import MediaRefused
from mxarchiverd.media.crypto import decrypt_file, encrypt_for_test, parse_file_info


def _b64(raw: bytes, urlsafe: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)
    return encoded.decode().rstrip("=")


def _write(tmp_path: Path, data: bytes) -> Path:
    src = tmp_path / "ciphertext"
    src.write_bytes(data)
    return src


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096, 10_000])
def test_round_trip_across_chunk_boundaries(tmp_path: Path, size: int) -> None:
    plaintext = bytes(i % 251 for i in range(size))
    ciphertext, info = encrypt_for_test(plaintext)
    dst = tmp_path / "plain"
    digest = decrypt_file(_write(tmp_path, ciphertext), dst, info, chunk=1000)
    assert dst.read_bytes() == plaintext
    assert digest == hashlib.sha256(plaintext).hexdigest()


def test_counter_block_matches_the_aes_ctr_standard(tmp_path: Path) -> None:
    # NIST SP 800-38A F.5.5 (CTR-AES256): the counter block carries from ..feff to ..ff00,
    # which a wrong counter layout would get wrong.
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ciphertext = bytes.fromhex("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5")
    info = {"v": "v2", "key": {"kty": "oct", "alg": "A256CTR", "ext": True, "key_ops": ["encrypt", "decrypt"],
                               "k": _b64(key, urlsafe=True)},
            "iv": _b64(counter), "hashes": {"sha256": _b64(hashlib.sha256(ciphertext).digest())}}
    dst = tmp_path / "plain"
    decrypt_file(_write(tmp_path, ciphertext), dst, info, chunk=7)
    assert dst.read_bytes() == plaintext


def test_encrypt_for_test_follows_v2(tmp_path: Path) -> None:
    _, info = encrypt_for_test(b"x", url="mxc://example.org/abc")
    parsed = parse_file_info(info)
    assert parsed.iv[8:] == bytes(8), "the counter half starts at zero"
    assert info["url"] == "mxc://example.org/abc"
    assert "=" not in info["iv"] + info["key"]["k"] + info["hashes"]["sha256"]


def test_tampered_ciphertext_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    ciphertext, info = encrypt_for_test(b"secret family photo" * 1000)
    tampered = bytearray(ciphertext)
    tampered[5000] ^= 1
    dst = tmp_path / "plain"
    dst.write_bytes(b"left over from an earlier attempt")
    with pytest.raises(MediaRefused, match="ciphertext sha256 mismatch"):
        decrypt_file(_write(tmp_path, bytes(tampered)), dst, info, chunk=1024)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ciphertext"]


def test_padded_base64_is_tolerated(tmp_path: Path) -> None:
    ciphertext, info = encrypt_for_test(b"hello")
    info["iv"] += "=" * (-len(info["iv"]) % 4)
    info["key"]["k"] += "=" * (-len(info["key"]["k"]) % 4)
    decrypt_file(_write(tmp_path, ciphertext), tmp_path / "plain", info)
    assert (tmp_path / "plain").read_bytes() == b"hello"


def _broken(path: str, value: Any) -> dict[str, Any]:
    _, info = encrypt_for_test(b"hello")
    broken = copy.deepcopy(info)
    *parents, leaf = path.split(".")
    target = broken
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return broken


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "reason"), [
    ("v", _DELETE, "file.v: expected 'v2'"),
    ("v", "v1", "file.v: expected 'v2'"),
    ("key", "not-a-jwk", "file.key: expected an object"),
    ("key.kty", "RSA", "file.key.kty"),
    ("key.alg", "A128CTR", "file.key.alg"),
    ("key.k", _b64(bytes(16), urlsafe=True), "file.key.k: decodes to 16 bytes, expected 32"),
    ("key.k", "ab+/" * 11, "file.key.k: not base64url"),
    ("key.k", 12345, "file.key.k: expected a base64 string"),
    ("key.key_ops", ["encrypt"], "file.key.key_ops"),
    ("key.ext", False, "file.key.ext"),
    ("iv", _b64(bytes(8)), "file.iv: decodes to 8 bytes, expected 16"),
    ("iv", "not base64!", "file.iv: not base64"),
    ("iv", "A", "file.iv: malformed base64"),
    ("hashes", _DELETE, "file.hashes: expected an object"),
    ("hashes.sha256", _b64(bytes(20)), "file.hashes.sha256: decodes to 20 bytes, expected 32"),
])
def test_bad_file_info_names_the_field(tmp_path: Path, path: str, value: Any, reason: str) -> None:
    info = _broken(path, value)
    with pytest.raises(MediaRefused) as refused:
        decrypt_file(_write(tmp_path, b"abc"), tmp_path / "plain", info)
    assert reason in refused.value.reason
    key = info.get("key")
    if isinstance(key, dict) and isinstance(key.get("k"), str) and len(key["k"]) > 8:
        assert key["k"] not in refused.value.reason
    assert not (tmp_path / "plain").exists()


def test_key_material_stays_out_of_reprs() -> None:
    _, info = encrypt_for_test(b"hello")
    parsed = parse_file_info(info)
    assert "key=***" in repr(parsed)
    assert parsed.key.hex() not in repr(parsed)


def test_chunk_must_be_positive(tmp_path: Path) -> None:
    ciphertext, info = encrypt_for_test(b"hello")
    with pytest.raises(ValueError, match="chunk"):
        decrypt_file(_write(tmp_path, ciphertext), tmp_path / "plain", info, chunk=0)
