"""One media job from start to end: find the bytes, apply policy, decrypt, upload.

Returns what to record; raises MediaRefused (never retried), StorageError
(retried; transient ones forever) or FetchFailed (retried up to retry_attempts).
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mxarchiverd.config import Config
from mxarchiverd.config.units import mime_allowed
from mxarchiverd.media.crypto import decrypt_file
from mxarchiverd.media.errors import MediaRefused
from mxarchiverd.media.fetch import FetchFailed, download, sha256_of
from mxarchiverd.media.jobs import Job
from mxarchiverd.media.paths import parse_mxc
from mxarchiverd.media.resolve import find_media
from mxarchiverd.sinks.storage import ObjectStore

DEFAULT_MIME = "application/octet-stream"


@dataclass(frozen=True)
class Stored:
    object_path: str
    size: int
    sha256: str
    mime_type: str
    filename: str | None
    decrypted: bool


def policy_refusal(size: int, mime_type: str, config: Config) -> str | None:
    """Why processing.max_file_size or the bucket's allowed_mime_types refuse this file."""
    limit = config.processing.max_file_size
    if size > limit:
        return f"file is {size} bytes, over processing.max_file_size ({limit})"
    allowed = config.supabase.storage.allowed_mime_types
    if not mime_allowed(allowed, mime_type):
        return f"mime type {mime_type} is not in supabase.storage.allowed_mime_types"
    return None


def transfer(job: Job, config: Config, synapse: psycopg.Connection | None, store: ObjectStore, workdir: Path,
             token: str | None = None) -> Stored:
    """`synapse`: Synapse's database (DB mode), None to fetch every file over the media API
    with `token` (bot mode: the bot's own; else matrix.access_token)."""
    with _source_file(job, config, synapse, workdir, token) as (path, known_mime, known_name):
        mime = job.mime_type or known_mime or DEFAULT_MIME
        with _plaintext(job, config, path, workdir) as (plain, decrypted):
            sha256, size = sha256_of(plain)
            refusal = policy_refusal(size, mime, config)
            if refusal:
                raise MediaRefused(refusal)
            object_path = job.object_path
            store.put_file(plain, object_path, mime, size)
    return Stored(object_path, size, sha256, mime, job.original_filename or known_name, decrypted)


@contextlib.contextmanager
def _source_file(job: Job, config: Config, synapse: psycopg.Connection | None, workdir: Path,
                 token: str | None) -> Iterator[tuple[Path, str | None, str | None]]:
    """The media store's file when it is there; else a downloaded temporary copy."""
    mxc = parse_mxc(job.matrix_url)
    found = None
    if synapse is not None:
        found = find_media(synapse, config.source.media_store_path, mxc, config.source.statement_timeout)
    if found and found.quarantined:
        raise MediaRefused(f"{mxc} is quarantined by a Synapse admin")
    if found and found.path is not None and found.path.is_file():
        yield found.path, found.mime_type, found.upload_name
        return
    if not config.processing.download_media:
        raise FetchFailed(f"{mxc} is not in the media store and processing.download_media is off")
    token = token or (config.matrix.access_token.value if config.matrix.access_token else None)
    path = download(config.matrix.homeserver_url, token, mxc, config.processing.max_file_size, workdir)
    try:
        yield path, found.mime_type if found else None, found.upload_name if found else None
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _plaintext(job: Job, config: Config, path: Path, workdir: Path) -> Iterator[tuple[Path, bool]]:
    """Encrypted attachments are decrypted (hash checked) unless decrypt_attachments is off."""
    if not job.encrypted_file or not config.processing.decrypt_attachments:
        yield path, False
        return
    target = Path(tempfile.mkstemp(prefix="plain-", dir=workdir)[1])
    try:
        decrypt_file(path, target, job.encrypted_file)
        yield target, True
    finally:
        target.unlink(missing_ok=True)
