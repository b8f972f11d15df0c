"""Find a media file in Synapse's media store, through Synapse's own tables.

Remote media live under the local `filesystem_id`, not the remote media id
(synapse-bridge-facts.md §5.1); a media id with a row in remote_media_cache for
its server is remote, one in local_media_repository is local.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from mxarchiverd.media.paths import MxcUri, local_media_path, remote_media_path

REMOTE_SQL = """
SELECT filesystem_id, media_type, upload_name, media_length, quarantined_by
  FROM remote_media_cache WHERE media_origin = %s AND media_id = %s
"""
LOCAL_SQL = """
SELECT media_type, upload_name, media_length, quarantined_by, url_cache
  FROM local_media_repository WHERE media_id = %s
"""


@dataclass(frozen=True)
class StoredMedia:
    path: Path | None  # None: Synapse knows the media but keeps no file we can read
    mime_type: str | None
    upload_name: str | None
    length: int | None
    quarantined: bool


def find_media(conn: psycopg.Connection, store: Path | None, mxc: MxcUri) -> StoredMedia | None:
    """Where Synapse keeps this mxc, or None if its database has never heard of it."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        remote = conn.execute(REMOTE_SQL, (mxc.server_name, mxc.media_id)).fetchone()
        if remote:
            fsid, mime, name, length, quarantined = remote
            path = remote_media_path(store, mxc.server_name, fsid) if store and fsid else None
            return StoredMedia(path, mime, name, length, quarantined is not None)
        local = conn.execute(LOCAL_SQL, (mxc.media_id,)).fetchone()
    if not local:
        return None
    mime, name, length, quarantined, url_cache = local
    # URL-preview cache entries live elsewhere (url_cache/); message media never do.
    path = local_media_path(store, mxc.media_id) if store and not url_cache else None
    return StoredMedia(path, mime, name, length, quarantined is not None)
