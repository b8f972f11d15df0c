"""Which login the bot uses, and the file that keeps it across restarts (no nio here).

One long-lived device is the point: every new device starts with no Megolm keys
and leaves a dead entry in the user's device list, so a restart must restore the
saved login (user id, device id, token) and never log in afresh while that login
is valid. The file is written atomically with mode 0600, because it holds the
access token; nothing here ever puts a secret into a message or a repr.

Decisions are pure (`decide_login`); the client (client.py) carries them out.
"""
from __future__ import annotations

import enum
import fcntl
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxarchiverd.e2ee.sealed_file import write_private

SESSION_FILE = "session.json"
LOCK_FILE = "lock"
SESSION_FORMAT = 1
FILE_MODE = 0o600
DIR_MODE = 0o700


class SessionFileError(Exception):
    """The state file exists but cannot be used; the message names the file and the key."""


class SessionMismatch(SessionFileError):
    """The saved login belongs to another user than the configured one."""


@dataclass(frozen=True)
class Credentials:
    """Seed 000's `matrix` settings. Secrets stay out of repr()."""

    homeserver_url: str
    username: str = ""
    password: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    device_name: str = "mxarchiverd"

    def __post_init__(self) -> None:
        problem = credentials_problem(self)
        if problem:
            raise ValueError(problem)


def credentials_problem(creds: Credentials) -> str | None:
    """What is wrong with the settings (by key name), or None."""
    if not creds.homeserver_url.startswith(("http://", "https://")):
        return "matrix.homeserver_url: expected an http:// or https:// URL"
    if not creds.password and not creds.access_token:
        return "matrix: set password (with username) or access_token"
    if creds.password and not creds.username:
        return "matrix.username: required to log in with a password"
    return None


@dataclass(frozen=True)
class StoredSession:
    """What the state file holds. `adopted_token_sha256` marks a token taken from the config."""

    user_id: str
    device_id: str
    access_token: str = field(repr=False)
    homeserver_url: str = ""
    adopted_token_sha256: str | None = None


class LoginAction(enum.Enum):
    RESTORE = "restore"            # use the saved login as it is
    PASSWORD = "password"          # log in with the password (same device id if one is saved)
    ADOPT_TOKEN = "adopt_token"    # take the configured access token (whoami tells the device)


@dataclass(frozen=True)
class LoginDecision:
    action: LoginAction
    device_id: str | None  # the device to keep, when logging in with a password


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def decide_login(stored: StoredSession | None, creds: Credentials) -> LoginDecision:
    """Restore whenever a saved login exists; a new device only when there is none.

    A configured access token that differs from the one adopted last time is the
    operator's new choice and wins; the same token again is not re-adopted, so a
    later password re-login (soft logout) is not undone at the next start.
    """
    if stored is not None:
        check_same_user(stored, creds)
    if creds.access_token and not _adopted(stored, creds.access_token):
        return LoginDecision(LoginAction.ADOPT_TOKEN, None)
    if stored is not None:
        return LoginDecision(LoginAction.RESTORE, stored.device_id)
    return LoginDecision(LoginAction.PASSWORD, None)


def _adopted(stored: StoredSession | None, token: str) -> bool:
    if stored is None or stored.adopted_token_sha256 is None:
        return False
    return hmac.compare_digest(stored.adopted_token_sha256, token_fingerprint(token))


def check_same_user(stored: StoredSession, creds: Credentials) -> None:
    """Refuse a saved login of another account rather than archive as the wrong user."""
    if not creds.username or same_user(stored.user_id, creds.username):
        return
    raise SessionMismatch(
        f"saved login is for {stored.user_id} but matrix.username is {creds.username}; "
        f"move the state directory's {SESSION_FILE} away to log in as the new user")


def same_user(user_id: str, username: str) -> bool:
    """`@bot:server` matches `@bot:server` and the bare localpart `bot`."""
    if username.startswith("@"):
        return user_id == username
    return user_id.split(":", 1)[0] == f"@{username}"


def wants_relogin(creds: Credentials) -> bool:
    """A soft logout can be repaired only with a password."""
    return bool(creds.password and creds.username)


# The state file ------------------------------------------------------------


def session_path(state_dir: Path) -> Path:
    return state_dir / SESSION_FILE


def ensure_state_dir(state_dir: Path) -> None:
    state_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def load_session(path: Path) -> StoredSession | None:
    """The saved login, None if there is none; SessionFileError if it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SessionFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SessionFileError(f"{path}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionFileError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno})") from None
    return session_from_dict(data, str(path))


def session_from_dict(data: Any, where: str) -> StoredSession:
    if not isinstance(data, dict):
        raise SessionFileError(f"{where}: expected a JSON object")
    if data.get("format") != SESSION_FORMAT:
        raise SessionFileError(f"{where}: format: expected {SESSION_FORMAT}, got {data.get('format')!r}")
    values = {key: _required_str(data, key, where) for key in ("user_id", "device_id", "access_token")}
    if not values["user_id"].startswith("@") or ":" not in values["user_id"]:
        raise SessionFileError(f"{where}: user_id: expected '@user:server'")
    adopted = data.get("adopted_token_sha256")
    if adopted is not None and not isinstance(adopted, str):
        raise SessionFileError(f"{where}: adopted_token_sha256: expected a string")
    homeserver = data.get("homeserver_url")
    return StoredSession(**values, homeserver_url=homeserver if isinstance(homeserver, str) else "",
                         adopted_token_sha256=adopted)


def _required_str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        # The value itself is never shown: it may be the token.
        raise SessionFileError(f"{where}: {key}: missing or not a non-empty string")
    return value


def session_to_dict(session: StoredSession) -> dict[str, Any]:
    return {
        "format": SESSION_FORMAT, "user_id": session.user_id, "device_id": session.device_id,
        "access_token": session.access_token, "homeserver_url": session.homeserver_url,
        "adopted_token_sha256": session.adopted_token_sha256,
    }


def save_session(path: Path, session: StoredSession) -> None:
    write_private_file(path, json.dumps(session_to_dict(session), indent=2) + "\n")


def write_private_file(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file: a crash leaves the old or the new, never half."""
    ensure_state_dir(path.parent)
    write_private(path, text.encode("utf-8"))


def load_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A random secret kept in a 0600 file (e.g. the store's pickle key when none is configured)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = ""
    if text:
        return text
    secret = os.urandom(nbytes).hex()
    write_private_file(path, secret + "\n")
    return secret


def lock_state_dir(state_dir: Path) -> int:
    """One process per state directory: two would share a device and corrupt its Olm state.

    The kernel drops the lock with the process, so a killed stage never blocks its successor.
    """
    ensure_state_dir(state_dir)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SessionFileError(f"{state_dir}: in use by another mxarchiverd process") from None
    return fd


def unlock_state_dir(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
