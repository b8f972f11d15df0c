"""Turn the parsed YAML mapping into a Config, one function per section."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from mxarchiverd.config.dsn import dsn_value_problems
from mxarchiverd.config.model import (
    ArchiveConfig, Config, DaemonConfig, DatabaseConfig, LoggingConfig, MatrixConfig,
    ProcessingConfig, RoomConfig, SourceConfig, StorageConfig, SupabaseConfig,
)
from mxarchiverd.config.reader import Problems, Section, as_bool, as_int, as_str, one_of
from mxarchiverd.config.units import MimePattern, parse_duration, parse_size

# Room versions 1-11 use !opaque:server; version 12 ids are a bare hash (no :server).
_ROOM_ID = re.compile(r"^![A-Za-z0-9._~+/=-]+(:[A-Za-z0-9.\-\[\]]+(:\d{1,5})?)?$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_config(data: Any, problems: Problems, path: Path | None) -> Config:
    top = Section(data, "", problems)
    supabase = _supabase(top.child("supabase"))
    config = Config(
        matrix=_matrix(top.child("matrix")),
        supabase=supabase,
        rooms=_rooms(top, problems),
        processing=_processing(top.child("processing")),
        source=_source(top.child("source")),
        archive=_archive(top.child("archive"), supabase),
        logging=_logging(top.child("logging")),
        daemon=_daemon(top.child("daemon")),
        path=path,
    )
    top.finish()
    _cross_checks(config, problems)
    return config


def _matrix(s: Section) -> MatrixConfig:
    d = MatrixConfig()
    out = MatrixConfig(
        homeserver_url=s.get("homeserver_url", _http_url, d.homeserver_url),
        username=s.get("username", as_str, None),
        password=s.secret("password"),
        access_token=s.secret("access_token"),
        device_name=s.get("device_name", as_str, d.device_name),
    )
    s.finish()
    return out


def _supabase(s: Section) -> SupabaseConfig:
    out = SupabaseConfig(
        url=s.get("url", _http_url, None),
        service_role_key=s.secret("service_role_key"),
        anon_key=s.secret("anon_key"),
        jwt_secret=s.secret("jwt_secret"),
        storage=_storage(s.child("storage")),
        database=_database(s.child("database")),
    )
    s.finish()
    return out


def _storage(s: Section) -> StorageConfig:
    d = StorageConfig()
    mimes = tuple(_mime(s, path, item) for path, item in s.items("allowed_mime_types"))
    out = StorageConfig(
        bucket=s.get("bucket", _bucket_name, d.bucket),
        public_bucket=s.get("public_bucket", as_bool, d.public_bucket),
        file_size_limit=s.get("file_size_limit", parse_size, None),
        allowed_mime_types=tuple(m for m in mimes if m is not None),
    )
    s.finish()
    return out


def _mime(s: Section, path: str, item: Any) -> MimePattern | None:
    try:
        return MimePattern.parse(item)
    except ValueError as exc:
        s.problems.add(path, str(exc))
        return None


def _database(s: Section) -> DatabaseConfig:
    d = DatabaseConfig()
    out = DatabaseConfig(
        connection_string=s.secret("connection_string"),
        pool_size=s.get("pool_size", as_int(1), d.pool_size),
        max_overflow=s.get("max_overflow", as_int(0), d.max_overflow),
    )
    s.finish()
    return out


def _rooms(top: Section, problems: Problems) -> tuple[RoomConfig, ...]:
    rooms: list[RoomConfig] = []
    seen: dict[str, str] = {}
    for path, item in top.items("rooms"):
        s = Section(item, path, problems)
        room_id = s.required("room_id", _room_id, 'a room id such as "!abc:example.org"')
        room = RoomConfig(room_id or "", s.get("enabled", as_bool, True), s.get("backfill", as_bool, True))
        s.finish()
        if room_id and room_id in seen:
            problems.add(f"{path}.room_id", f"duplicate of {seen[room_id]}.room_id")
        elif room_id:
            seen[room_id] = path
            rooms.append(room)
    return tuple(rooms)


def _processing(s: Section) -> ProcessingConfig:
    d = ProcessingConfig()
    out = ProcessingConfig(
        max_file_size=s.get("max_file_size", parse_size, d.max_file_size),
        batch_size=s.get("batch_size", as_int(1), d.batch_size),
        # The seed writes sync_timeout in milliseconds (30000), as /sync does.
        sync_timeout=s.get("sync_timeout", lambda v: parse_duration(v, bare_unit="ms"), d.sync_timeout),
        concurrent_uploads=s.get("concurrent_uploads", as_int(1), d.concurrent_uploads),
        retry_attempts=s.get("retry_attempts", as_int(1), d.retry_attempts),
        retry_delay=s.get("retry_delay", parse_duration, d.retry_delay),
        poll_interval=s.get("poll_interval", _positive_duration, d.poll_interval),
        redaction_policy=s.get("redaction_policy", one_of("keep", "purge"), d.redaction_policy),  # type: ignore[arg-type]
        download_media=s.get("download_media", as_bool, d.download_media),
        media_thumbnails=s.get("media_thumbnails", as_bool, d.media_thumbnails),
        decrypt_attachments=s.get("decrypt_attachments", as_bool, d.decrypt_attachments),
        analysis_jobs=s.get("analysis_jobs", as_bool, d.analysis_jobs),
    )
    s.finish()
    return out


def _source(s: Section) -> SourceConfig:
    d = SourceConfig()
    writers = tuple(as_str(item) for _, item in s.items("event_writers")) or d.event_writers
    out = SourceConfig(
        mode=s.get("mode", one_of("synapse_db", "matrix_sync"), d.mode),  # type: ignore[arg-type]
        synapse_db_url=s.secret("synapse_db_url") or d.synapse_db_url,
        bridge_db_url=s.secret("bridge_db_url"),
        media_store_path=s.get("media_store_path", _absolute_path, None),
        event_writers=writers,
        statement_timeout=s.get("statement_timeout", _positive_duration, d.statement_timeout),
        bridge_id=s.get("bridge_id", as_str, d.bridge_id),
        bridge_type=s.get("bridge_type", as_str, d.bridge_type),
        auto_discover_bridged_rooms=s.get("auto_discover_bridged_rooms", as_bool, d.auto_discover_bridged_rooms),
        follow_backfill=s.get("follow_backfill", as_bool, d.follow_backfill),
    )
    s.finish()
    return out


def _archive(s: Section, supabase: SupabaseConfig) -> ArchiveConfig:
    d = ArchiveConfig()
    # With a Supabase project configured, media goes to its Storage unless told otherwise.
    default_backend = "supabase" if supabase.url else "file"
    out = ArchiveConfig(
        database_url=s.secret("database_url"),
        storage_backend=s.get("storage_backend", one_of("supabase", "file"), default_backend),  # type: ignore[arg-type]
        storage_path=s.get("storage_path", _absolute_path, d.storage_path),
    )
    s.finish()
    return out


def _logging(s: Section) -> LoggingConfig:
    out = LoggingConfig(level=s.get("level", lambda v: one_of(*_LOG_LEVELS)(str(v).upper()), "INFO"))
    s.finish()
    return out


def _daemon(s: Section) -> DaemonConfig:
    d = DaemonConfig()
    out = DaemonConfig(
        heartbeat_timeout=s.get("heartbeat_timeout", _positive_duration, d.heartbeat_timeout),
        stop_timeout=s.get("stop_timeout", _positive_duration, d.stop_timeout),
        startup_timeout=s.get("startup_timeout", parse_duration, d.startup_timeout),
        restart_backoff_initial=s.get("restart_backoff_initial", _positive_duration, d.restart_backoff_initial),
        restart_backoff_max=s.get("restart_backoff_max", _positive_duration, d.restart_backoff_max),
        restart_limit=s.get("restart_limit", as_int(1), d.restart_limit),
        restart_window=s.get("restart_window", _positive_duration, d.restart_window),
        start_method=s.get("start_method", one_of("forkserver", "spawn"), d.start_method),  # type: ignore[arg-type]
    )
    s.finish()
    return out


def _dsn_problems(config: Config, problems: Problems) -> None:
    """libpq must be able to parse every connection string; its error text would quote the password."""
    dsns = {"source.synapse_db_url": config.source.synapse_db_url, "source.bridge_db_url": config.source.bridge_db_url,
            "archive.database_url": config.archive.database_url,
            "supabase.database.connection_string": config.supabase.database.connection_string}
    for path, secret in dsns.items():
        if secret is None:
            continue
        try:
            params = conninfo_to_dict(secret.value)
        except psycopg.Error:
            problems.add(path, "not a connection string libpq can parse (check the quoting; a '%' "
                               "in a URL password must be written %25)")
            continue
        for problem in dsn_value_problems(params):
            problems.add(path, f"connection string option {problem}")


def _cross_checks(config: Config, problems: Problems) -> None:
    _dsn_problems(config, problems)
    if config.archive_dsn is None:
        problems.add("archive.database_url", "required: set it or supabase.database.connection_string")
    if config.archive.storage_backend == "supabase":
        if not config.supabase.url:
            problems.add("supabase.url", "required when archive.storage_backend is supabase")
        if config.supabase.service_role_key is None:
            problems.add("supabase.service_role_key", "required when archive.storage_backend is supabase")


def _room_id(value: Any) -> str:
    text = str(value)
    if not _ROOM_ID.match(text):
        raise ValueError(f'expected a room id starting with "!" (like "!abc:example.org" or a version 12 "!hash"), got {value!r}')
    return text


def _http_url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return text


def _bucket_name(value: Any) -> str:
    text = str(value)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", text):
        raise ValueError(f"expected a bucket name of letters, digits, '-', '_' or '.', got {value!r}")
    return text


def _absolute_path(value: Any) -> Path:
    path = Path(str(value))
    if not path.is_absolute():
        raise ValueError(f"expected an absolute path, got {value!r}")
    return path


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration above zero, got {value!r}")
    return seconds
