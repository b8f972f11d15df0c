"""Object storage for media: the ObjectStore interface, Supabase Storage and a local directory."""
from __future__ import annotations

from mxarchiverd.config.model import Config
from mxarchiverd.sinks.storage.base import ObjectStore, StorageError
from mxarchiverd.sinks.storage.file import FileStore
from mxarchiverd.sinks.storage.supabase import SupabaseStore

__all__ = ["FileStore", "ObjectStore", "StorageError", "SupabaseStore", "open_store"]


def open_store(config: Config) -> ObjectStore:
    """The store archive.storage_backend names, built from the validated config."""
    storage = config.supabase.storage
    if config.archive.storage_backend == "file":
        return FileStore(config.archive.storage_path, storage.bucket)
    if config.supabase.url is None or config.supabase.service_role_key is None:
        raise ValueError("archive.storage_backend is supabase but supabase.url or "
                         "supabase.service_role_key is not set")
    return SupabaseStore(
        config.supabase.url, config.supabase.service_role_key.value, storage.bucket,
        public=storage.public_bucket, file_size_limit=storage.file_size_limit,
        allowed_mime_types=[str(m) for m in storage.allowed_mime_types],
    )
