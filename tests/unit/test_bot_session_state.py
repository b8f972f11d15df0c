"""Which login the bot uses, and the 0600 state file that carries it across restarts."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mxarchiverd.sources.matrix_sync.session import (
    Credentials, LoginAction, SessionFileError, SessionMismatch, StoredSession, decide_login,
    load_or_create_secret, load_session, same_user, save_session, session_path, token_fingerprint,
    wants_relogin,
)

HS = "http://127.0.0.1:8008"
SAVED = StoredSession("@archiver:example.org", "DEVICEA", "syt_saved_token", HS)


def creds(**kwargs) -> Credentials:
    base = {"homeserver_url": HS, "username": "@archiver:example.org", "password": "pw-secret"}
    base.update(kwargs)
    return Credentials(**base)


@pytest.mark.parametrize("stored, settings, action, device", [
    (None, creds(), LoginAction.PASSWORD, None),
    (SAVED, creds(), LoginAction.RESTORE, "DEVICEA"),
    (SAVED, creds(username="archiver"), LoginAction.RESTORE, "DEVICEA"),
    (None, creds(password=None, access_token="syt_cfg"), LoginAction.ADOPT_TOKEN, None),
    (SAVED, creds(access_token="syt_cfg"), LoginAction.ADOPT_TOKEN, None),  # new token from the operator
])
def test_decide_login(stored, settings, action, device) -> None:
    decision = decide_login(stored, settings)
    assert (decision.action, decision.device_id) == (action, device)


def test_a_token_adopted_once_is_not_adopted_again() -> None:
    adopted = StoredSession("@archiver:example.org", "D", "syt_relogged", HS,
                            adopted_token_sha256=token_fingerprint("syt_cfg"))
    assert decide_login(adopted, creds(access_token="syt_cfg")).action is LoginAction.RESTORE
    assert decide_login(adopted, creds(access_token="syt_other")).action is LoginAction.ADOPT_TOKEN


def test_a_saved_login_of_another_user_is_refused() -> None:
    with pytest.raises(SessionMismatch, match="@archiver:example.org.*@other:example.org"):
        decide_login(SAVED, creds(username="@other:example.org"))
    with pytest.raises(SessionMismatch):
        decide_login(SAVED, creds(username="other"))


@pytest.mark.parametrize("user_id, username, same", [
    ("@bot:a.org", "@bot:a.org", True), ("@bot:a.org", "bot", True), ("@bot:a.org", "@bot:b.org", False),
    ("@bot:a.org", "bo", False), ("@bot:a.org", "bot:a.org", False),
])
def test_same_user(user_id, username, same) -> None:
    assert same_user(user_id, username) is same


@pytest.mark.parametrize("kwargs, key", [
    ({"homeserver_url": "localhost:8008"}, "matrix.homeserver_url"),
    ({"password": None}, "matrix: set password"),
    ({"username": "", "password": "pw"}, "matrix.username"),
])
def test_bad_settings_name_the_key(kwargs, key) -> None:
    with pytest.raises(ValueError, match=key):
        creds(**kwargs)


def test_secrets_stay_out_of_repr() -> None:
    text = repr(creds(access_token="syt_cfg_token")) + repr(SAVED)
    assert "pw-secret" not in text and "syt_cfg_token" not in text and "syt_saved_token" not in text


def test_relogin_needs_a_password() -> None:
    assert wants_relogin(creds())
    assert not wants_relogin(creds(password=None, username="", access_token="t"))


def test_state_file_round_trip_is_private_and_atomic(tmp_path: Path) -> None:
    path = session_path(tmp_path / "state")
    assert load_session(path) is None
    save_session(path, SAVED)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_session(path) == SAVED
    save_session(path, StoredSession(SAVED.user_id, SAVED.device_id, "syt_new", HS))
    assert load_session(path).access_token == "syt_new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["session.json"]  # no temp file left


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not JSON (line 1"),
    ("[]", "expected a JSON object"),
    (json.dumps({"format": 2}), "format: expected 1"),
    (json.dumps({"format": 1, "user_id": "@a:b", "device_id": "D"}), "access_token: missing"),
    (json.dumps({"format": 1, "user_id": "a", "device_id": "D", "access_token": "t"}), "user_id: expected"),
    (json.dumps({"format": 1, "user_id": "@a:b", "device_id": 5, "access_token": "t"}), "device_id: missing"),
])
def test_a_damaged_state_file_is_named_and_its_token_not_shown(tmp_path: Path, content, problem) -> None:
    path = tmp_path / "session.json"
    path.write_text(content)
    with pytest.raises(SessionFileError) as raised:
        load_session(path)
    assert problem in str(raised.value) and str(path) in str(raised.value)


def test_a_token_in_a_bad_file_is_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    path.write_text(json.dumps({"format": 1, "user_id": "@a:b", "device_id": ["syt_leak"],
                                "access_token": "syt_leak"}))
    with pytest.raises(SessionFileError) as raised:
        load_session(path)
    assert "syt_leak" not in str(raised.value)


def test_binary_garbage_is_a_session_error(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SessionFileError, match="not UTF-8"):
        load_session(path)


def test_generated_secret_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "pickle.key"
    first = load_or_create_secret(path)
    assert len(first) == 64 and load_or_create_secret(path) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
