"""Whether source.media_store_path can serve Synapse's local media: checked at start.

A wrong or missing media store is not an error the uploader can see per job: each job
just fails ("not in the media store and matrix.access_token is not set") and goes dead,
257 of 277 within 75 s. So `run` (preflight) and `check-config` compare the configured
store with what Synapse's database says it holds, before any job is claimed.

The verdict is a pure function of a few file-system facts and a sample of Synapse's
newest local uploads; only read_local_media touches the database.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mxarchiverd.config import Config
from mxarchiverd.media.paths import local_media_path

KEY = "source.media_store_path"
SAMPLE = 20
# URL-preview cache entries are not under local_content/ (media/resolve.py).
NEWEST_LOCAL_SQL = """
SELECT media_id FROM local_media_repository WHERE url_cache IS NULL AND quarantined_by IS NULL
 ORDER BY created_ts DESC LIMIT %s
"""


@dataclass(frozen=True)
class Verdict:
    problem: str | None = None  # refuse to start (exit 78)
    warning: str | None = None  # start, but say it


def read_local_media(conn: psycopg.Connection, statement_timeout: float) -> list[str]:
    """Media ids of Synapse's newest local uploads (empty: it has none)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(f"SET LOCAL statement_timeout = {max(1, int(statement_timeout * 1000))}")
        return [str(row[0]) for row in conn.execute(NEWEST_LOCAL_SQL, (SAMPLE,)).fetchall()]


def check_media_store(config: Config, synapse: psycopg.Connection) -> Verdict:
    """The verdict on config's media store, asking Synapse's database what it holds."""
    newest = read_local_media(synapse, config.source.statement_timeout)
    return judge_store(config.source.media_store_path, newest, can_download(config))


def can_download(config: Config) -> bool:
    return config.processing.download_media and config.matrix.access_token is not None


def judge_store(store: Path | None, newest_local: list[str], downloads: bool) -> Verdict:
    """What to make of `store` when Synapse's newest local uploads are `newest_local`."""
    if not newest_local:
        return Verdict()  # nothing local to read yet (a new homeserver)
    if store is None:
        if downloads:
            return Verdict()  # every file comes over the authenticated media API
        return Verdict(problem="not set, and without matrix.access_token (and processing.download_media) none of"
                               " Synapse's local media can be read: set it to Synapse's media_store_path")
    shape = _shape_problem(store)
    if shape:
        return Verdict(problem=f"{store} {shape}, but Synapse has local media: set it to Synapse's media_store_path")
    found = sum(1 for media_id in newest_local if _readable_file(store, media_id))
    if found:
        return Verdict()
    missing = (f"none of the {len(newest_local)} newest local media files Synapse lists is under"
               f" {store / 'local_content'}")
    if downloads:
        return Verdict(warning=f"{missing}; they will come over the media API (is this Synapse's store?)")
    return Verdict(problem=f"{missing} (is this Synapse's store?); set it to Synapse's media_store_path,"
                           " or set matrix.access_token to download them")


def _shape_problem(store: Path) -> str | None:
    if not store.exists():
        return "does not exist"
    if not store.is_dir():
        return "is not a directory"
    local = store / "local_content"
    if not local.is_dir():
        return "does not look like Synapse's media store (no local_content/ folder)"
    if not os.access(local, os.R_OK | os.X_OK):
        return f"is not readable by this user (uid {os.getuid()})"
    return None


def _readable_file(store: Path, media_id: str) -> bool:
    try:
        return local_media_path(store, media_id).is_file()
    except (ValueError, OSError):
        return False  # an id that is not a safe path component cannot be in the store
