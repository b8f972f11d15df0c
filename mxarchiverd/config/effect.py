"""Keys that are accepted but have no effect in the configured mode.

Seed 000's example config is accepted as written, and some of its keys are read by
nothing (pool_size, anon_key, ...) or only by a mode that is not configured (the bot's
login under synapse_db). check-config and `run` name them, so that nobody believes a
setting works when it does not. One row per such key: the conditions under which it
has an effect (any one suffices; none: it never has one in this release) and why.
Keys without a row always have an effect.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mxarchiverd.config.model import Config

SYNAPSE_DB = "source.mode: synapse_db"
MATRIX_SYNC = "source.mode: matrix_sync"
SUPABASE_STORAGE = "archive.storage_backend: supabase"
FILE_STORAGE = "archive.storage_backend: file"
OWN_ARCHIVE_URL_UNSET = "archive.database_url unset"


@dataclass(frozen=True)
class Effect:
    when: tuple[str, ...]  # () = read by nothing in this release
    why: str


_BOT = "the bot's login; synapse_db reads the database and logs in nowhere"
_POOL = "read by nothing: each stage opens its own connections, the uploader as many as processing.concurrent_uploads"
_SOURCE_DB = "read from Synapse's database, which only source.mode synapse_db does"

EFFECT: dict[str, Effect] = {
    "matrix.username": Effect((MATRIX_SYNC,), _BOT),
    "matrix.password": Effect((MATRIX_SYNC,), _BOT),
    "matrix.device_name": Effect((MATRIX_SYNC,), _BOT),
    "processing.sync_timeout": Effect((MATRIX_SYNC,), "the /sync long-poll; synapse_db polls every poll_interval"),
    "supabase.anon_key": Effect((), "read by nothing: Storage is reached with supabase.service_role_key"),
    "supabase.jwt_secret": Effect((), "read by nothing: the archiver signs no tokens"),
    "supabase.database.pool_size": Effect((), _POOL),
    "supabase.database.max_overflow": Effect((), _POOL),
    "supabase.database.connection_string": Effect((OWN_ARCHIVE_URL_UNSET,), "archive.database_url is set and wins"),
    "supabase.url": Effect((SUPABASE_STORAGE,), "only the supabase storage backend talks to the project"),
    "supabase.service_role_key": Effect((SUPABASE_STORAGE,), "only the supabase storage backend uses it"),
    "supabase.storage.public_bucket": Effect((SUPABASE_STORAGE,), "a setting of the Supabase bucket"),
    "supabase.storage.file_size_limit": Effect((SUPABASE_STORAGE,), "a setting of the Supabase bucket"),
    "archive.storage_path": Effect((FILE_STORAGE,), "the directory of the file storage backend"),
    "source.synapse_db_url": Effect((SYNAPSE_DB,), _SOURCE_DB),
    "source.media_store_path": Effect((SYNAPSE_DB,), "matrix_sync downloads every file over the media API"),
    "source.event_writers": Effect((SYNAPSE_DB,), _SOURCE_DB),
    "source.statement_timeout": Effect((SYNAPSE_DB,), _SOURCE_DB),
    "source.follow_backfill": Effect((SYNAPSE_DB,), _SOURCE_DB),
    "source.auto_discover_bridged_rooms": Effect((SYNAPSE_DB,), "portal discovery runs in the synapse_db poller"),
}


def conditions(config: Config) -> frozenset[str]:
    """The facts of this configuration that the table's conditions are written in."""
    facts = {f"source.mode: {config.source.mode}", f"archive.storage_backend: {config.archive.storage_backend}"}
    if config.archive.database_url is None:
        facts.add(OWN_ARCHIVE_URL_UNSET)
    return frozenset(facts)


def given_keys(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Key paths the operator gave a value (`x_file` counts as `x`; lists are not walked)."""
    for key, value in data.items():
        path = f"{prefix}{str(key).removesuffix('_file')}"
        if isinstance(value, Mapping):
            yield from given_keys(value, f"{path}.")
        elif value is not None and value != "":
            yield path


def keys_without_effect(config: Config, given: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key path, why) for each given key that nothing reads in this configuration, in file order."""
    facts = conditions(config)
    found = []
    for key in dict.fromkeys(given_keys(given)):
        effect = EFFECT.get(key)
        if effect is not None and not facts.intersection(effect.when):
            found.append((key, describe(effect)))
    return found


def describe(effect: Effect) -> str:
    if not effect.when:
        return effect.why
    return f"has an effect only with {' or '.join(effect.when)} ({effect.why})"
