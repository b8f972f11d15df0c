"""The typed configuration: one frozen dataclass per YAML section, each key declared once.

Every field is a `setting()` or a `section()` (settings.py): its default, its
parser, what a reload does when it changes, in which source modes it matters
and what it means are all in that one declaration. Frozen and made of plain
values, so that a Config can be handed to spawned child processes (pickled)
and compared section by section on reload.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mxarchiverd.config.reader import Section
from mxarchiverd.config.secret import Secret
from mxarchiverd.config.settings import (
    ARCHIVE_USERS, FILE_STORAGE, OWN_ARCHIVE_URL_UNSET, POLLER, SOURCE_READERS, SUPABASE_STORAGE, UPLOADER, Effect,
    section, setting,
)
from mxarchiverd.config.units import MimePattern, parse_duration, parse_size
from mxarchiverd.config.values import (
    absolute_path, as_bool, as_int, as_str, bucket_name, http_url, listen_address, log_level,
    milliseconds_duration, one_of, positive_duration, room_id,
)

__all__ = ["Secret"]  # re-exported: config users import it from here or from the package

HOT, RESTART, SUPERVISOR, REFUSE = Effect.HOT, Effect.RESTART, Effect.SUPERVISOR, Effect.REFUSE
DB_MODE: tuple[str, ...] = ("synapse_db",)
BOT_MODE: tuple[str, ...] = ("matrix_sync",)
NO_MODE: tuple[str, ...] = ()
_BOT = "the bot's login; synapse_db reads the database and logs in nowhere"
_BOT_ONLY = "only the bot (source.mode matrix_sync) reads it"
_POOL = "read by nothing: each stage opens its own connections, the uploader as many as processing.concurrent_uploads"
_SOURCE_DB = "read from Synapse's database, which only source.mode synapse_db does"
_BUCKET = "a setting of the Supabase bucket"


@dataclass(frozen=True)
class MatrixConfig:
    homeserver_url: str = setting(
        "http://localhost:8008", "the homeserver's client API: media downloads, and the bot's connection",
        RESTART, restarts=POLLER | UPLOADER, parse=http_url)
    username: str | None = setting(None, "the bot's user id or localpart", RESTART, restarts=POLLER,
                                   parse=as_str, modes=BOT_MODE, idle=_BOT)
    password: Secret | None = setting(None, "the bot's password (log in once; the session is kept)", RESTART,
                                      restarts=POLLER, secret=True, modes=BOT_MODE, idle=_BOT)
    access_token: Secret | None = setting(
        None, "an access token: the bot's login, and in both modes the download of media not in the media store",
        RESTART, restarts=frozenset({"poller", "uploader"}), secret=True)
    device_name: str = setting("mxarchiverd", "display name of the bot's device", RESTART, restarts=POLLER,
                               parse=as_str, modes=BOT_MODE, idle=_BOT)
    state_dir: Path = setting(
        Path("/var/lib/mxarchiverd/matrix"), "the bot's login, device keys and sync filters (mode 0700)", RESTART,
        restarts=POLLER | UPLOADER, parse=absolute_path, modes=BOT_MODE, idle=_BOT_ONLY)
    pickle_key: Secret | None = setting(
        None, "encrypts the bot's crypto store (16+ characters; required in matrix_sync mode)", RESTART,
        restarts=POLLER, secret=True, modes=BOT_MODE, idle=_BOT_ONLY)
    timeline_limit: int = setting(50, "events per room in one /sync; a longer gap is paged through /messages",
                                  HOT, parse=as_int(1), modes=BOT_MODE, idle=_BOT_ONLY)
    accept_invites: str = setting(
        "listed", "listed: invites to configured or already archived rooms (every room with rooms: []); "
        "all; none", HOT, parse=one_of("listed", "all", "none"), modes=BOT_MODE, idle=_BOT_ONLY)
    use_admin_api: bool = setting(
        True, "when the account is a server admin, page what the bot could not see through Synapse's admin API",
        HOT, parse=as_bool, modes=BOT_MODE, idle=_BOT_ONLY)


@dataclass(frozen=True)
class StorageConfig:
    bucket: str = setting("matrix-media", "Storage bucket, created at start if missing", RESTART,
                          restarts=UPLOADER, parse=bucket_name)
    # Private by default: archived private chats must not be world-readable by URL.
    public_bucket: bool = setting(False, "make every stored object readable by anyone who knows its URL",
                                  RESTART, restarts=UPLOADER, parse=as_bool, needs=(SUPABASE_STORAGE,), idle=_BUCKET)
    file_size_limit: int | None = setting(None, "the bucket's size limit (e.g. 100MB)", RESTART,
                                          restarts=UPLOADER, parse=parse_size, shown_default="none",
                                          needs=(SUPABASE_STORAGE,), idle=_BUCKET)
    allowed_mime_types: tuple[MimePattern, ...] = setting(
        (), "mime types the bucket accepts (wildcards like image/*)", RESTART, restarts=UPLOADER,
        each=MimePattern.parse, shown_default="all")


@dataclass(frozen=True)
class DatabaseConfig:
    connection_string: Secret | None = setting(None, "the archive database (Supabase's Postgres)", RESTART,
                                               restarts=ARCHIVE_USERS, secret=True, needs=(OWN_ARCHIVE_URL_UNSET,),
                                               idle="archive.database_url is set and wins")
    pool_size: int = setting(10, "accepted for seed 000's config; connections are sized by the stages",
                             HOT, parse=as_int(1), modes=NO_MODE, idle=_POOL)
    max_overflow: int = setting(20, "accepted for seed 000's config; no effect", HOT, parse=as_int(0), modes=NO_MODE,
                              idle=_POOL)


@dataclass(frozen=True)
class SupabaseConfig:
    url: str | None = setting(None, "the Supabase project (Storage)", RESTART, restarts=UPLOADER, parse=http_url,
                              needs=(SUPABASE_STORAGE,), idle="only the supabase storage backend talks to the project")
    service_role_key: Secret | None = setting(None, "the project's service key (Storage)", RESTART,
                                              restarts=UPLOADER, secret=True, needs=(SUPABASE_STORAGE,),
                                              idle="only the supabase storage backend uses it")
    anon_key: Secret | None = setting(None, "accepted for seed 000's config; never used (it is public)", HOT,
                                      secret=True, modes=NO_MODE,
                                      idle="read by nothing: Storage is reached with supabase.service_role_key")
    jwt_secret: Secret | None = setting(None, "accepted for seed 000's config; never used", HOT, secret=True,
                                        modes=NO_MODE, idle="read by nothing: the archiver signs no tokens")
    storage: StorageConfig = section(StorageConfig, "the media bucket")
    database: DatabaseConfig = section(DatabaseConfig, "the archive database")


@dataclass(frozen=True)
class RoomConfig:
    room_id: str
    enabled: bool = True
    # True: archive the room's whole history; False: only from when it was added.
    backfill: bool = True


RedactionPolicy = Literal["keep", "purge"]


@dataclass(frozen=True)
class ProcessingConfig:
    max_file_size: int = setting(100 * 1024**2, "larger media are refused", HOT, parse=parse_size,
                                 shown_default="100MB")
    batch_size: int = setting(500, "events per batch and transaction", HOT, parse=as_int(1))
    sync_timeout: float = setting(30.0, "the /sync long-poll (a bare number is in ms, as seed 000 writes it)",
                                  HOT, parse=milliseconds_duration, modes=BOT_MODE, shown_default="30s",
                                  idle="the /sync long-poll; synapse_db polls every poll_interval")
    concurrent_uploads: int = setting(5, "media transfers at once", HOT, parse=as_int(1))
    retry_attempts: int = setting(3, "media attempts before a job is dead-lettered", HOT, parse=as_int(1))
    retry_delay: float = setting(5.0, "first media retry delay (doubling); storage outages retry at this pace",
                                 HOT, parse=parse_duration, shown_default="5s")
    # Well under a second, so that the seed's 5 s latency target holds with margin.
    poll_interval: float = setting(0.2, "wait between polls when idle (a quarter of it while events arrive)", HOT,
                                   parse=positive_duration, shown_default="200ms")
    redaction_policy: RedactionPolicy = setting(
        "keep", "keep: a redaction marks the row; purge: also clears its content and deletes its media",
        HOT, parse=one_of("keep", "purge"))
    download_media: bool = setting(True, "fetch media not in the media store over HTTP", HOT, parse=as_bool)
    media_thumbnails: bool = setting(True, "archive thumbnails too", HOT, parse=as_bool)
    decrypt_attachments: bool = setting(True, "store encrypted attachments decrypted", HOT, parse=as_bool)
    analysis_jobs: bool = setting(True, "an analysis_jobs row per stored file (seed 001)", HOT, parse=as_bool)


SourceMode = Literal["synapse_db", "matrix_sync"]


@dataclass(frozen=True)
class SourceConfig:
    mode: SourceMode = setting(
        "synapse_db", "synapse_db reads Synapse's database; matrix_sync follows rooms as a bot user", REFUSE,
        parse=one_of("synapse_db", "matrix_sync"))
    # Synapse's database on this host over the local socket, as the service's own
    # OS user (peer authentication): the setup the README describes.
    synapse_db_url: Secret | None = setting(
        Secret("postgresql:///synapse"), "Synapse's database; a read-only role is enough", RESTART,
        restarts=SOURCE_READERS | UPLOADER, secret=True, modes=DB_MODE, shown_default="postgresql:///synapse",
        idle=_SOURCE_DB)
    bridge_db_url: Secret | None = setting(
        None, "mautrix-whatsapp's (bridgev2) database, for WhatsApp ids and names", RESTART,
        restarts=SOURCE_READERS, secret=True)
    media_store_path: Path | None = setting(None, "Synapse's media_store_path", RESTART, restarts=UPLOADER,
                                            parse=absolute_path, modes=DB_MODE,
                                            idle="matrix_sync downloads every file over the media API")
    # Synapse's stream_writers.events; the commit-safe bound needs every writer's row.
    event_writers: tuple[str, ...] = setting(
        ("master",), "Synapse's stream_writers.events (the bound needs each writer's position)", RESTART,
        restarts=SOURCE_READERS, each=as_str, modes=DB_MODE, shown_default="[master]", idle=_SOURCE_DB)
    statement_timeout: float = setting(10.0, "per source statement", RESTART, restarts=SOURCE_READERS,
                                       parse=positive_duration, shown_default="10s")
    bridge_id: str = setting("", "bridgev2 bridge_id (empty for a standalone bridge)", RESTART,
                             restarts=SOURCE_READERS, parse=as_str, shown_default="''")
    bridge_type: str = setting("whatsapp", "monitored_rooms.bridge_type of bridged rooms", RESTART,
                               restarts=SOURCE_READERS, parse=as_str)
    auto_discover_bridged_rooms: bool = setting(
        False, "add every bridged portal room to monitored_rooms (seed 001, phase 3)", RESTART,
        restarts=SOURCE_READERS, parse=as_bool, modes=DB_MODE, idle="portal discovery runs in the synapse_db poller")
    # Follow federation backfill (negative stream orderings) with its own cursor.
    follow_backfill: bool = setting(True, "follow federation backfill (negative stream orderings)", RESTART,
                                    restarts=SOURCE_READERS, parse=as_bool, modes=DB_MODE, idle=_SOURCE_DB)


StorageBackend = Literal["supabase", "file"]


def _default_backend(config: Any) -> str:
    """With a Supabase project configured, media goes to its Storage unless told otherwise."""
    return "supabase" if config.supabase.url else "file"


@dataclass(frozen=True)
class ArchiveConfig:
    database_url: Secret | None = setting(
        None, "the archive database; Supabase's pooler on port 6543 works", RESTART, restarts=ARCHIVE_USERS,
        secret=True, shown_default="supabase.database.connection_string")
    storage_backend: StorageBackend = setting(
        "file", "where media goes: supabase (Storage) or file (a local directory)", RESTART, restarts=UPLOADER,
        parse=one_of("supabase", "file"), derive=_default_backend,
        shown_default="supabase if supabase.url is set, else file")
    storage_path: Path = setting(Path("/var/lib/mxarchiverd/media"), "directory of the file backend", RESTART,
                                 restarts=UPLOADER, parse=absolute_path, needs=(FILE_STORAGE,),
                                 idle="the directory of the file storage backend")


LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class LoggingConfig:
    level: str = setting("INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL", HOT, parse=log_level)
    format: LogFormat = setting(
        "text", "text: one line per record (tracebacks folded in); json: one JSON object per line", REFUSE,
        parse=one_of("text", "json"))


@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None = setting(
        None, "serve Prometheus metrics on this port or host:port (a bare port: 127.0.0.1 only); off when unset",
        REFUSE, parse=listen_address, shown_default="off")


StartMethod = Literal["spawn", "forkserver"]


def _default_holder(config: Any) -> str:
    """Unique per running daemon: a restarted daemon is a new holder (it takes the lease
    with a new fencing token), and two daemons on one host never share a name."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class HaConfig:
    enabled: bool = setting(False, "run as one of several daemons on one archive: one leads, the others stand by",
                            REFUSE, parse=as_bool)
    lease_duration: float = setting(
        6.0, "a leader that stops renewing is replaced this long after its last renewal", HOT,
        parse=positive_duration, shown_default="6s")
    renew_interval: float = setting(2.0, "how often the leader renews and a standby checks the lease", HOT,
                                    parse=positive_duration, shown_default="2s")
    holder: str = setting("", "this daemon's name in the lease and in status", REFUSE, parse=as_str,
                          derive=_default_holder, shown_default="hostname:pid")


@dataclass(frozen=True)
class DaemonConfig:
    heartbeat_timeout: float = setting(
        60.0, "a stage silent this long, or holding work without progress this long, is restarted",
        SUPERVISOR, parse=positive_duration, shown_default="60s")
    stop_timeout: float = setting(60.0, "the whole drain on SIGTERM (keep it below TimeoutStopSec=)", SUPERVISOR,
                                  parse=positive_duration, shown_default="60s")
    startup_timeout: float = setting(60.0, "how long databases may stay unreachable at start", SUPERVISOR,
                                     parse=parse_duration, shown_default="60s")
    restart_backoff_initial: float = setting(0.5, "first restart delay of a failed stage", SUPERVISOR,
                                             parse=positive_duration, shown_default="500ms")
    restart_backoff_max: float = setting(30.0, "longest restart delay", SUPERVISOR, parse=positive_duration,
                                         shown_default="30s")
    restart_limit: int = setting(10, "more restarts than this within restart_window: exit 3", SUPERVISOR,
                                 parse=as_int(1))
    restart_window: float = setting(300.0, "see restart_limit", SUPERVISOR, parse=positive_duration,
                                    shown_default="5m")
    # Fixed when the first child (or the fork server) starts.
    start_method: StartMethod = setting("forkserver", "how stage processes start: forkserver or spawn", REFUSE,
                                        parse=one_of("forkserver", "spawn"))
    ha: HaConfig = section(HaConfig, "high availability: a lease in the archive database")


def _read_rooms(s: Section, key: str) -> tuple[RoomConfig, ...]:
    """rooms[]: each a mapping with a valid, unique room_id."""
    rooms: list[RoomConfig] = []
    seen: dict[str, str] = {}
    for path, item in s.items(key):
        entry = Section(item, path, s.problems)
        room = entry.required("room_id", room_id, 'a room id such as "!abc:example.org"')
        config = RoomConfig(room or "", entry.get("enabled", as_bool, True), entry.get("backfill", as_bool, True))
        entry.finish()
        if room and room in seen:
            s.problems.add(f"{path}.room_id", f"duplicate of {seen[room]}.room_id")
        elif room:
            seen[room] = path
            rooms.append(config)
    return tuple(rooms)


@dataclass(frozen=True)
class Config:
    matrix: MatrixConfig = section(MatrixConfig, "the homeserver's client API and the bot account")
    supabase: SupabaseConfig = section(SupabaseConfig, "the Supabase project")
    rooms: tuple[RoomConfig, ...] = setting(
        (), "rooms to archive (room_id, enabled, backfill); empty: every room", HOT, read=_read_rooms,
        shown_default="all rooms")
    processing: ProcessingConfig = section(ProcessingConfig, "batches and media transfers")
    source: SourceConfig = section(SourceConfig, "where events come from")
    archive: ArchiveConfig = section(ArchiveConfig, "where they are stored")
    logging: LoggingConfig = section(LoggingConfig, "logs")
    metrics: MetricsConfig = section(MetricsConfig, "the Prometheus endpoint")
    daemon: DaemonConfig = section(DaemonConfig, "supervision")
    # Where the config came from, for messages and for SIGHUP re-reads; not a setting.
    path: Path | None = None
    # The key paths the file (or the environment) set; not a setting.
    given: frozenset[str] = frozenset()

    @property
    def archive_dsn(self) -> str | None:
        """The archive database: archive.database_url, else Supabase's connection string."""
        secret = self.archive.database_url or self.supabase.database.connection_string
        return secret.value if secret else None
