"""`mxarchiverd keys import FILE`: import an Element key export and decrypt the archive with it.

The keys go into the bot's own crypto store when bot mode has a saved login
(the running daemon adopts them within a minute), else into a keyring store in
`matrix.state_dir` that DB mode's archives are decrypted with. Then every
archived ciphertext of an imported session, whichever mode wrote it, is
decrypted in place through the same write as the pipeline's (archive/batches.py):
content, message type, relations and media jobs from the plaintext, the
ciphertext kept in `event`, no new row.

The passphrase is read from a file or asked at the terminal, never from the
command line (it would show in `ps`), and it appears in no message.
"""
from __future__ import annotations

import getpass
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mxarchiverd.archive import sync_state
from mxarchiverd.archive.batches import write_batch
from mxarchiverd.archive.connection import open_archive
from mxarchiverd.classify import build_row
from mxarchiverd.config import Config
from mxarchiverd.pipeline.cursors import DecryptionCursor
from mxarchiverd.pipeline.messages import RowBatch

log = logging.getLogger(__name__)
PAGE = 500
LOG_EVERY = 5.0


class KeysCommandError(Exception):
    """What keeps the import from starting; the message names the file or key (never a secret)."""


@dataclass(frozen=True)
class ImportReport:
    sessions_in_file: int
    sessions_imported: int
    events_decrypted: int
    events_still_encrypted: int
    skipped_entries: tuple[str, ...]


def read_passphrase(passphrase_file: str | None) -> str:
    if passphrase_file:
        try:
            return Path(passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise KeysCommandError(f"--passphrase-file {passphrase_file}: cannot read ({exc.strerror})") from None
    if not sys.stdin.isatty():
        raise KeysCommandError("no terminal to ask for the passphrase: give --passphrase-file")
    return getpass.getpass("passphrase of the key export: ")


def open_store(config: Config) -> Any:
    """The bot's crypto store if bot mode has logged in here, else the keyring store."""
    from mxarchiverd.e2ee.store import CryptoSettings, CryptoStoreError, open_offline
    from mxarchiverd.sources.matrix_sync.session import SessionFileError, load_session, session_path

    key = config.matrix.pickle_key.value if config.matrix.pickle_key else ""
    try:
        settings = CryptoSettings(config.matrix.state_dir, key)
        stored = load_session(session_path(config.matrix.state_dir)) if config.source.mode == "matrix_sync" else None
        if stored is not None:
            return open_offline(settings, stored.user_id, stored.device_id)
        config.matrix.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return open_offline(settings)
    except (CryptoStoreError, SessionFileError, OSError) as exc:
        raise KeysCommandError(f"matrix.pickle_key / matrix.state_dir: {exc}") from None


def import_keys(config: Config, path: Path, passphrase: str, *, progress: bool) -> ImportReport:
    from mxarchiverd.e2ee.key_import import KeyImportError, import_key_file

    client = open_store(config)
    try:
        try:
            result = import_key_file(client, path, passphrase)
        except KeyImportError as exc:
            raise KeysCommandError(str(exc)) from None
        decrypted, left = decrypt_archive(config, client, [(r.room_id, r.session_id) for r in result.decryptable],
                                          progress=progress)
    finally:
        _close(client)
    return ImportReport(result.total, len(result.imported), decrypted, left, tuple(result.skipped))


def restore_backup(config: Config, recovery_key: str, *, progress: bool) -> ImportReport:
    """Restore the bot's server-side key backup into its store, then decrypt the archive.

    For a bot whose crypto store was lost (a new device): the backup holds what a client
    of the bot user uploaded, opened with that user's recovery key.
    """
    import asyncio

    from mxarchiverd.e2ee.backup import BackupError, restore_from_backup
    from mxarchiverd.e2ee.store import CryptoSettings, CryptoStoreError, new_client, restore_session
    from mxarchiverd.sources.matrix_sync.session import load_session, session_path

    stored = load_session(session_path(config.matrix.state_dir)) if config.source.mode == "matrix_sync" else None
    if stored is None:
        raise KeysCommandError("restore-backup needs the bot's saved login (source.mode matrix_sync, a first start)")
    key = config.matrix.pickle_key.value if config.matrix.pickle_key else ""
    loop = asyncio.new_event_loop()
    try:
        settings = CryptoSettings(config.matrix.state_dir, key)
        client = new_client(config.matrix.homeserver_url, stored.user_id, settings, device_id=stored.device_id)
        restore_session(client, settings, stored.user_id, stored.device_id, stored.access_token)
        try:
            restored = loop.run_until_complete(restore_from_backup(client, recovery_key))
            refs = [(r.room_id, r.session_id) for r in restored.result.decryptable]
            decrypted, left = decrypt_archive(config, client, refs, progress=progress)
        finally:
            loop.run_until_complete(client.close())
    except (BackupError, CryptoStoreError) as exc:
        raise KeysCommandError(str(exc)) from None
    finally:
        loop.close()
    result = restored.result
    return ImportReport(result.total, len(result.imported), decrypted, left, tuple(result.skipped))


def read_secret_file(path: str | None, what: str) -> str:
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KeysCommandError(f"{what} {path}: cannot read ({exc.strerror})") from None
    if not sys.stdin.isatty():
        raise KeysCommandError(f"no terminal to ask for it: give {what}")
    return getpass.getpass("recovery key: ")


def decrypt_archive(config: Config, client: Any, refs: list[tuple[str, str]], *, progress: bool) -> tuple[int, int]:
    """Decrypt every archived ciphertext of the sessions; (decrypted, still encrypted)."""
    from mxarchiverd.sources.matrix_sync.decryption import Decryptor, _raw

    if not refs:
        return 0, 0
    decryptor = Decryptor(client)
    decrypted = left = 0
    purge = config.processing.redaction_policy == "purge"
    with open_archive(config, purpose="keys import") as archive, _Progress(progress) as bar:
        for rows in _pages(archive, refs):
            events = [_raw(row) for row in rows]
            decryptor.annotate(events)
            plain = [build_row(e, thumbnails=config.processing.media_thumbnails) for e in events if "decrypted" in e]
            if plain:
                write_batch(archive, RowBatch(DecryptionCursor(), plain), purge=purge)
            decrypted, left = decrypted + len(plain), left + len(events) - len(plain)
            bar.update(len(events), decrypted)
    return decrypted, left


def _pages(archive: Any, refs: list[tuple[str, str]]) -> Iterator[list[sync_state.Ciphertext]]:
    """Pages of the sessions' ciphertext; what stays encrypted is passed, not read again."""
    after = (-(2**63), "")
    while True:
        rows = sync_state.ciphertext_of_sessions(archive, refs, limit=PAGE, after=after)
        archive.commit()
        if not rows:
            return
        yield rows
        after = (rows[-1].timestamp, rows[-1].event_id)


class _Progress:
    """A bar with rate and ETA on a terminal; a log line every few seconds without one."""

    def __init__(self, bar: bool) -> None:
        self.bar: Any = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(unit="event", desc="decrypting", file=sys.stderr)
        self.seen, self.logged_at = 0, time.monotonic()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, count: int, decrypted: int) -> None:
        self.seen += count
        if self.bar is not None:
            self.bar.update(count)
            self.bar.set_postfix(decrypted=decrypted)
        elif time.monotonic() >= self.logged_at + LOG_EVERY:
            self.logged_at = time.monotonic()
            log.info("keys import: %d archived event(s) tried, %d decrypted", self.seen, decrypted)


def _close(client: Any) -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(client.close())
    finally:
        loop.close()
