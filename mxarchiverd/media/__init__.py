"""Media references (mxc URIs), Synapse media_store paths, storage keys and attachment crypto."""
from __future__ import annotations

from mxarchiverd.media.errors import MediaRefused
from mxarchiverd.media.paths import (
    MxcUri, local_media_path, parse_mxc, remote_media_path, storage_object_path,
)

__all__ = [
    "MediaRefused", "MxcUri", "local_media_path", "parse_mxc", "remote_media_path",
    "storage_object_path",
]
