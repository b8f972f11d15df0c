"""The full daemon under benchmark: its config, started by the shared launcher, and a cursor probe.

The daemon runs exactly as a user runs it (`.venv/bin/mxarchiverd --config X run`,
tests/support/daemon.py), in its own session; it is stopped with SIGTERM and its
process group is swept by PID.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from benchlib import procs
from tests.support.daemon import Daemon, render_config

# A port nothing listens on: with it as supabase.url the uploader waits for its
# bucket and moves no media (the "uploader idle" setting of the backfill benchmark).
CLOSED_STORAGE_URL = "http://127.0.0.1:9"


@dataclass
class DaemonConfig:
    synapse_dsn: str
    archive_dsn: str
    workdir: Path
    media_store: Path | None = None
    storage: str = "idle"  # "idle" (uploader waits), "file", or "supabase"
    supabase_url: str | None = None
    service_key: str | None = None
    batch_size: int = 500
    poll_interval: str = "200ms"
    concurrent_uploads: int = 5
    log_level: str = "INFO"

    def sections(self) -> dict[str, Any]:
        media_store = self.media_store or (self.workdir / "media_store")
        # Laid out as Synapse's (the daemon refuses a media store without local_content/).
        (media_store / "local_content").mkdir(parents=True, exist_ok=True)
        archive: dict[str, Any] = {"database_url": self.archive_dsn}
        sections: dict[str, Any] = {
            "source": {"mode": "synapse_db", "synapse_db_url": self.synapse_dsn,
                       "media_store_path": str(media_store), "statement_timeout": "10s"},
            "archive": archive,
        }
        if self.storage == "file":
            archive.update(storage_backend="file", storage_path=str(self.workdir / "archive_media"))
        else:
            archive["storage_backend"] = "supabase"
            idle = self.storage == "idle"
            sections["supabase"] = {"url": CLOSED_STORAGE_URL if idle else self.supabase_url,
                                    "service_role_key": "unused" if idle else self.service_key}
        sections.update({
            # Idle mode: the synthetic media rows have no files; with a token the start-up check
            # expects them over the media API (never fetched: the uploader waits for its bucket).
            "matrix": {"homeserver_url": "http://127.0.0.1:9",
                       **({"access_token": "unused"} if self.storage == "idle" else {})},
            "rooms": [],
            "processing": {
                "batch_size": self.batch_size, "poll_interval": self.poll_interval,
                "concurrent_uploads": self.concurrent_uploads,
                # Idle mode: a refused bucket is retried rarely, so the uploader stays quiet.
                "retry_delay": "10m" if self.storage == "idle" else "1s", "download_media": self.storage == "idle",
            },
            "logging": {"level": self.log_level},
            "daemon": {"stop_timeout": "30s", "startup_timeout": "30s"},
        })
        return sections

    def daemon(self, log_path: Path, env: dict[str, str] | None = None) -> Daemon:
        """A launcher with this config written (not started yet); `env` for its processes."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        daemon = Daemon(self.workdir, config_path=self.workdir / "mxarchiver.yaml", log_path=log_path, env=env)
        daemon.write_config(**self.sections()).chmod(0o600)  # it holds a (dummy) service key
        return daemon

    def write(self) -> Path:
        """Only the config file (for the stages run in-process)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "mxarchiver.yaml"
        path.write_text(render_config(self.sections()))
        return path


def start_daemon(stack: procs.Cleanup, daemon: Daemon) -> Daemon:
    """Start it, with its stop (SIGTERM, then the sweep of its group) on the clean-up stack."""
    daemon.start()
    stack.callback(lambda: _stop(daemon), label=f"stop mxarchiverd (pid {daemon.pid})")
    return daemon


def _stop(daemon: Daemon) -> None:
    daemon.stop()


class CursorProbe:
    """Reads the archive's durable 'events' cursor (moved in the same transaction as its rows)."""

    def __init__(self, archive_dsn: str) -> None:
        self.dsn = archive_dsn
        self.conn: psycopg.Connection | None = None

    def position(self) -> int | None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None)
            row = self.conn.execute("SELECT position FROM archive_cursors WHERE stream = 'events'").fetchone()
            return int(row[0]) if row else None
        except psycopg.errors.UndefinedTable:
            return None  # not migrated yet
        except psycopg.OperationalError:
            self.close()
            return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_for_position(daemon: Daemon, probe: CursorProbe, target: int, timeout_s: float,
                      interval_s: float = 0.05) -> tuple[float, float | None]:
    """Poll until the cursor reaches `target`; returns (time reached, time it first moved) as time.time()."""
    deadline = time.monotonic() + timeout_s
    first_move: float | None = None
    while True:
        position = probe.position()
        now = time.time()
        if position is not None and position > 0 and first_move is None:
            first_move = now
        if position is not None and position >= target:
            return now, first_move
        daemon.check_running()
        if time.monotonic() > deadline:
            raise TimeoutError(f"archive cursor at {position}, not {target}, after {timeout_s:.0f}s; "
                               f"log tail:\n{daemon.tail()}")
        time.sleep(interval_s)
