"""Import Megolm sessions (a key export file, or a restored backup) into the crypto store.

Returns which sessions the store now holds from the input, so the caller can
retry every archived event of those sessions, ciphertext that DB mode archived
included. A session already held from an earlier message index is kept: nio's
store would overwrite it with the worse copy (it compares sessions by object
identity), and the events between the two indexes would never decrypt again.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxarchiverd.e2ee.ciphertext import MEGOLM_V1, SessionRef
from mxarchiverd.e2ee.key_export import KeyExportError, decrypt_key_export
from mxarchiverd.e2ee.megolm import find_session

if TYPE_CHECKING:
    from nio import AsyncClient

Progress = Callable[[int, int], None]  # (sessions done, sessions in the input)
SAVE_BATCH = 500


class KeyImportError(RuntimeError):
    """The key file cannot be imported at all; nothing was imported."""


@dataclass(frozen=True)
class ImportResult:
    imported: list[SessionRef] = field(default_factory=list)      # new, or an earlier index
    already_held: list[SessionRef] = field(default_factory=list)  # the store had it as good
    skipped: list[str] = field(default_factory=list)              # "#12: why", per bad entry
    total: int = 0

    @property
    def decryptable(self) -> list[SessionRef]:
        """Every session of the input the store holds: retry archived events of all of them."""
        return sorted(set(self.imported) | set(self.already_held))


def import_key_file(client: AsyncClient, path: Path, passphrase: str,
                    on_progress: Progress | None = None) -> ImportResult:
    """Import an Element key export; :class:`KeyImportError` if the file or passphrase is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyImportError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        sessions = decrypt_key_export(text, passphrase, str(path))
    except KeyExportError as exc:
        raise KeyImportError(str(exc)) from None
    return import_sessions(client, sessions, on_progress)


def import_sessions(client: AsyncClient, sessions: list[Any],
                    on_progress: Progress | None = None) -> ImportResult:
    """Import ExportedSessionData objects; bad entries are skipped and listed, never fatal."""
    result = ImportResult(total=len(sessions))
    for start in range(0, len(sessions), SAVE_BATCH):
        with _one_transaction(client):
            for offset, entry in enumerate(sessions[start:start + SAVE_BATCH]):
                _import_one(client, start + offset, entry, result)
        if on_progress is not None:
            on_progress(min(start + SAVE_BATCH, len(sessions)), len(sessions))
    return result


def _one_transaction(client: AsyncClient) -> Any:
    # One SQLite transaction per batch instead of one per session (fsyncs dominate).
    database = getattr(client.store, "database", None)
    return database.atomic() if database is not None else contextlib.nullcontext()


def _import_one(client: AsyncClient, index: int, entry: Any, result: ImportResult) -> None:
    problem = entry_problem(entry)
    if problem is not None:
        result.skipped.append(f"#{index}: {problem}")
        return
    session = _session_from(entry)
    if isinstance(session, str):
        result.skipped.append(f"#{index}: {session}")
        return
    ref = SessionRef(entry["room_id"], entry["session_id"])
    current = find_session(client, ref)
    if current is not None and current.first_known_index <= session.first_known_index:
        result.already_held.append(ref)
        return
    olm = client.olm
    assert olm is not None
    if current is not None:
        _forget(olm, current)
    olm.inbound_group_store.add(session)
    olm.save_inbound_group_session(session)
    result.imported.append(ref)


def _forget(olm: Any, session: Any) -> None:
    # Drop the worse copy (it may sit under another sender key) before adding the better one.
    olm.inbound_group_store[session.room_id][session.sender_key].pop(session.id, None)


def adopt_stored_sessions(client: AsyncClient) -> list[SessionRef]:
    """Take into memory the sessions another process imported into this store; return them.

    nio reads the store only at load; a running bot calls this when told that
    ``keys import`` ran, then retries the pending events of the returned refs.
    """
    assert client.store is not None and client.olm is not None
    adopted = []
    for session in client.store.load_inbound_group_sessions():
        ref = SessionRef(session.room_id, session.id)
        current = find_session(client, ref)
        if current is not None and current.first_known_index <= session.first_known_index:
            continue
        if current is not None:
            _forget(client.olm, current)
        client.olm.inbound_group_store.add(session)
        adopted.append(ref)
    return adopted


_REQUIRED_TEXT = ("room_id", "session_id", "session_key", "sender_key")


def entry_problem(entry: Any) -> str | None:
    """What makes one ExportedSessionData unusable, or None."""
    if not isinstance(entry, Mapping):
        return f"expected an object, got {type(entry).__name__}"
    if entry.get("algorithm") != MEGOLM_V1:
        return f"algorithm {entry.get('algorithm')!r} is not {MEGOLM_V1}"
    for name in _REQUIRED_TEXT:
        if not isinstance(entry.get(name), str) or not entry.get(name):
            return f"{name}: missing or not a string"
    claimed = entry.get("sender_claimed_keys")
    if not isinstance(claimed, Mapping) or not isinstance(claimed.get("ed25519"), str):
        return "sender_claimed_keys.ed25519: missing or not a string"
    chain = entry.get("forwarding_curve25519_key_chain", [])
    if not isinstance(chain, list) or not all(isinstance(k, str) for k in chain):
        return "forwarding_curve25519_key_chain: not a list of strings"
    return None


def _session_from(entry: Mapping[str, Any]) -> Any:
    """A nio InboundGroupSession, or a string saying why the key does not import."""
    import vodozemac
    from nio.crypto import InboundGroupSession

    try:
        session = InboundGroupSession.import_session(
            entry["session_key"], entry["sender_claimed_keys"]["ed25519"], entry["sender_key"],
            entry["room_id"], list(entry.get("forwarding_curve25519_key_chain", [])))
    except (vodozemac.SessionKeyDecodeException, ValueError) as exc:
        return f"session_key does not decode ({type(exc).__name__})"
    if session.id != entry["session_id"]:
        return "session_key belongs to another session than session_id"
    return session
