"""Cross-signing private keys at rest: AES-GCM under the pickle key, 0600, clear errors."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mxarchiverd.e2ee.cross_signing_keys import CrossSigningKeys, load_keys, save_keys
from mxarchiverd.e2ee.sealed_file import SealedFileError, read_private, seal, unseal, write_private
from mxarchiverd.e2ee.signing import has_valid_signature

PICKLE_KEY = "a-long-secret-pickle-key-0123"
USER = "@bot:archive.test"


def test_keys_round_trip_through_a_0600_file(tmp_path: Path) -> None:
    keys = CrossSigningKeys.generate(USER)
    path = tmp_path / "cross_signing.sealed"
    save_keys(path, keys, PICKLE_KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_keys(path, PICKLE_KEY, USER)
    assert loaded is not None
    assert (loaded.master_public, loaded.self_signing_public, loaded.user_signing_public) == (
        keys.master_public, keys.self_signing_public, keys.user_signing_public)
    assert not list(tmp_path.glob("*.partial"))


def test_the_file_holds_no_key_material_in_the_clear(tmp_path: Path) -> None:
    keys = CrossSigningKeys.generate(USER)
    path = tmp_path / "keys"
    save_keys(path, keys, PICKLE_KEY)
    text = path.read_text()
    assert PICKLE_KEY not in text and keys.master_public not in text and USER not in text
    assert json.loads(text)["cipher"] == "AES-256-GCM"


def test_the_file_is_created_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600


def test_a_missing_file_means_no_keys_yet(tmp_path: Path) -> None:
    assert load_keys(tmp_path / "absent", PICKLE_KEY, USER) is None


def test_a_wrong_pickle_key_is_a_clear_error_without_either_key(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    save_keys(path, CrossSigningKeys.generate(USER), PICKLE_KEY)
    wrong = "another-long-pickle-key-xyz"
    with pytest.raises(SealedFileError) as refused:
        load_keys(path, wrong, USER)
    message = str(refused.value)
    assert str(path) in message and "pickle key" in message
    assert wrong not in message and PICKLE_KEY not in message


def test_an_altered_file_does_not_open(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    save_keys(path, CrossSigningKeys.generate(USER), PICKLE_KEY)
    envelope = json.loads(path.read_text())
    raw = bytearray(envelope["ciphertext"], "ascii")
    raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
    envelope["ciphertext"] = raw.decode()
    path.write_text(json.dumps(envelope))
    with pytest.raises(SealedFileError, match="altered"):
        load_keys(path, PICKLE_KEY, USER)


def test_a_sealed_blob_does_not_open_for_another_purpose() -> None:
    blob = seal(b"secret", PICKLE_KEY, "cross-signing-keys")
    with pytest.raises(SealedFileError, match="sealed for 'cross-signing-keys'"):
        unseal(blob, PICKLE_KEY, "backup-key", "f")
    assert unseal(blob, PICKLE_KEY, "cross-signing-keys", "f") == b"secret"


def test_keys_of_another_user_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    save_keys(path, CrossSigningKeys.generate("@other:archive.test"), PICKLE_KEY)
    with pytest.raises(SealedFileError, match="@other:archive.test"):
        load_keys(path, PICKLE_KEY, USER)


def test_a_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    save_keys(path, CrossSigningKeys.generate(USER), PICKLE_KEY)
    path.chmod(0o644)
    with pytest.raises(SealedFileError, match=r"mode 0644 .*chmod 600"):
        read_private(path)


def test_garbage_is_not_a_sealed_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    write_private(path, b"not json at all")
    with pytest.raises(SealedFileError, match="not a sealed file"):
        load_keys(path, PICKLE_KEY, USER)


def test_upload_body_is_signed_by_the_master_key() -> None:
    keys = CrossSigningKeys.generate(USER)
    body = keys.upload_body()
    master_id = f"ed25519:{keys.master_public}"
    assert body["master_key"] == {"user_id": USER, "usage": ["master"],
                                  "keys": {master_id: keys.master_public}}
    for name, usage, public in (("self_signing_key", "self_signing", keys.self_signing_public),
                                ("user_signing_key", "user_signing", keys.user_signing_public)):
        assert body[name]["usage"] == [usage]
        assert body[name]["keys"] == {f"ed25519:{public}": public}
        assert has_valid_signature(body[name], USER, master_id, keys.master_public)


def test_reprs_show_no_private_keys() -> None:
    keys = CrossSigningKeys.generate(USER)
    assert "Ed25519PrivateKey" not in repr(keys) and "master=" not in repr(keys)
