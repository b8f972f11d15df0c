"""Find a media file in Synapse's media store, through Synapse's own tables.

Remote media live under the local `filesystem_id`, not the remote media id
(synapse-bridge-facts.md §5.1); a media id with a row in remote_media_cache for
its server is remote. local_media_repository is keyed by media id alone, so a
row there is this homeserver's upload of that mxc only when the mxc names this
homeserver: its uploader's user id (@local:domain) carries the server name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from mxarchiverd.media.paths import MxcUri, local_media_path, remote_media_path

DEFAULT_STATEMENT_TIMEOUT = 10.0

REMOTE_SQL = """
SELECT filesystem_id, media_type, upload_name, media_length, quarantined_by
  FROM remote_media_cache WHERE media_origin = %s AND media_id = %s
"""
LOCAL_SQL = """
SELECT media_type, upload_name, media_length, quarantined_by, url_cache, user_id
  FROM local_media_repository WHERE media_id = %s
"""


@dataclass(frozen=True)
class StoredMedia:
    path: Path | None  # None: Synapse knows the media but keeps no file we can read
    mime_type: str | None
    upload_name: str | None
    length: int | None
    quarantined: bool


def find_media(conn: psycopg.Connection, store: Path | None, mxc: MxcUri,
               statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT) -> StoredMedia | None:
    """Where Synapse keeps this mxc, or None if its database has never heard of it."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(f"SET LOCAL statement_timeout = {timeout_ms(statement_timeout)}")
        remote = conn.execute(REMOTE_SQL, (mxc.server_name, mxc.media_id)).fetchone()
        if remote:
            fsid, mime, name, length, quarantined = remote
            path = remote_media_path(store, mxc.server_name, fsid) if store and fsid else None
            return StoredMedia(path, mime, name, length, quarantined is not None)
        local = conn.execute(LOCAL_SQL, (mxc.media_id,)).fetchone()
    if not local or not uploaded_on(local[5], mxc.server_name):
        return None
    mime, name, length, quarantined, url_cache, _ = local
    # URL-preview cache entries live elsewhere (url_cache/); message media never do.
    path = local_media_path(store, mxc.media_id) if store and not url_cache else None
    return StoredMedia(path, mime, name, length, quarantined is not None)


def uploaded_on(user_id: str | None, server_name: str) -> bool:
    """Whether a local upload by `user_id` is served as mxc://server_name/...

    Synapse serves local media only under its own server name. Without an
    uploader the row proves nothing, and the media is fetched over HTTP instead.
    """
    return user_id is not None and user_domain(user_id) == server_name


def user_domain(user_id: str) -> str | None:
    """The server name of @localpart:domain[:port]; localparts never hold ':'."""
    if not user_id.startswith("@") or ":" not in user_id:
        return None
    return user_id.split(":", 1)[1] or None


def timeout_ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
