"""The typed configuration: one frozen dataclass per YAML section.

Frozen and made of plain values so that a Config can be handed to spawned child
processes (pickled) and compared section by section on reload.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mxarchiverd.config.units import MimePattern

_URL_PASSWORD = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)(?P<password>[^@]*)(?P<tail>@.*)$", re.I)
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


@dataclass(frozen=True)
class Secret:
    """A value that must never reach a log, an error message or the process title."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def masked(self) -> str:
        """Show a URL or DSN with only its password hidden; anything else fully hidden."""
        url = _URL_PASSWORD.match(self.value)
        if url:
            return f"{url['head']}***{url['tail']}"
        if _DSN_PASSWORD.search(self.value):
            return _DSN_PASSWORD.sub(r"\1***", self.value)
        if "://" in self.value or "host=" in self.value:
            return self.value
        return "***"


@dataclass(frozen=True)
class MatrixConfig:
    homeserver_url: str = "http://localhost:8008"
    username: str | None = None
    password: Secret | None = None
    # Used only to fetch media that is not in the media store (authenticated media API).
    access_token: Secret | None = None
    device_name: str = "mxarchiverd"


@dataclass(frozen=True)
class StorageConfig:
    bucket: str = "matrix-media"
    # Private by default: archived private chats must not be world-readable by URL.
    public_bucket: bool = False
    file_size_limit: int | None = None
    allowed_mime_types: tuple[MimePattern, ...] = ()


@dataclass(frozen=True)
class DatabaseConfig:
    connection_string: Secret | None = None
    pool_size: int = 10
    max_overflow: int = 20


@dataclass(frozen=True)
class SupabaseConfig:
    url: str | None = None
    service_role_key: Secret | None = None
    anon_key: Secret | None = None
    jwt_secret: Secret | None = None
    storage: StorageConfig = StorageConfig()
    database: DatabaseConfig = DatabaseConfig()


@dataclass(frozen=True)
class RoomConfig:
    room_id: str
    enabled: bool = True
    # True: archive the room's whole history; False: only from when it was added.
    backfill: bool = True


RedactionPolicy = Literal["keep", "purge"]


@dataclass(frozen=True)
class ProcessingConfig:
    max_file_size: int = 100 * 1024**2
    batch_size: int = 500
    sync_timeout: float = 30.0
    concurrent_uploads: int = 5
    retry_attempts: int = 3
    retry_delay: float = 5.0
    # Well under a second, so that the seed's 5 s latency target holds with margin.
    poll_interval: float = 0.2
    redaction_policy: RedactionPolicy = "keep"
    download_media: bool = True
    media_thumbnails: bool = True
    decrypt_attachments: bool = True
    analysis_jobs: bool = True


SourceMode = Literal["synapse_db", "matrix_sync"]


@dataclass(frozen=True)
class SourceConfig:
    mode: SourceMode = "synapse_db"
    # Synapse's database on this host over the local socket, as the service's own
    # OS user (peer authentication): the setup the README describes.
    synapse_db_url: Secret | None = Secret("postgresql:///synapse")
    bridge_db_url: Secret | None = None
    media_store_path: Path | None = None
    # Synapse's stream_writers.events; the commit-safe bound needs every writer's row.
    event_writers: tuple[str, ...] = ("master",)
    statement_timeout: float = 10.0
    bridge_id: str = ""
    bridge_type: str = "whatsapp"
    auto_discover_bridged_rooms: bool = False
    # Follow federation backfill (negative stream orderings) with its own cursor.
    follow_backfill: bool = True


StorageBackend = Literal["supabase", "file"]


@dataclass(frozen=True)
class ArchiveConfig:
    database_url: Secret | None = None
    storage_backend: StorageBackend = "file"
    storage_path: Path = Path("/var/lib/mxarchiverd/media")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"


StartMethod = Literal["spawn", "forkserver"]


@dataclass(frozen=True)
class DaemonConfig:
    # A child whose main loop has not stamped its heartbeat for this long is stuck.
    heartbeat_timeout: float = 60.0
    # Whole drain on SIGTERM; the unit's TimeoutStopSec= must be larger.
    stop_timeout: float = 60.0
    # How long a database may stay unreachable at start before we exit UNAVAILABLE.
    startup_timeout: float = 60.0
    restart_backoff_initial: float = 0.5
    restart_backoff_max: float = 30.0
    # More than restart_limit restarts within restart_window: give up, exit RESTART_LIMIT.
    restart_limit: int = 10
    restart_window: float = 300.0
    start_method: StartMethod = "forkserver"


@dataclass(frozen=True)
class Config:
    matrix: MatrixConfig = MatrixConfig()
    supabase: SupabaseConfig = SupabaseConfig()
    rooms: tuple[RoomConfig, ...] = ()
    processing: ProcessingConfig = ProcessingConfig()
    source: SourceConfig = SourceConfig()
    archive: ArchiveConfig = ArchiveConfig()
    logging: LoggingConfig = LoggingConfig()
    daemon: DaemonConfig = DaemonConfig()
    # Where the config came from, for messages and for SIGHUP re-reads.
    path: Path | None = None

    @property
    def archive_dsn(self) -> str | None:
        """The archive database: archive.database_url, else Supabase's connection string."""
        secret = self.archive.database_url or self.supabase.database.connection_string
        return secret.value if secret else None
