"""The full daemon under test: its config file, `mxarchiverd run` as a subprocess, probes.

The daemon runs exactly as a user runs it (`.venv/bin/mxarchiverd --config X run`),
in its own session; it is stopped with SIGTERM and its process tree is swept by PID.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from benchlib import REPO, procs

# Seed 001's variables override the config file: a developer's shell must not steer the benchmark.
_DROP_ENV = ("SYNAPSE_DB_URL", "WHATSAPP_DB_URL", "SUPABASE_URL", "SUPABASE_KEY", "POLL_INTERVAL_MS",
             "BATCH_SIZE", "MEDIA_STORE_PATH", "DOWNLOAD_MEDIA", "MONITORED_ROOMS", "MXARCHIVER_CONFIG",
             "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "MXARCHIVERD_STAGES")
# A port nothing listens on: with it as supabase.url the uploader waits for its
# bucket and moves no media (the "uploader idle" setting of the backfill benchmark).
CLOSED_STORAGE_URL = "http://127.0.0.1:9"


def executable() -> str:
    candidate = Path(sys.executable).parent / "mxarchiverd"
    return str(candidate if candidate.exists() else REPO / ".venv" / "bin" / "mxarchiverd")


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

    def write(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        media_store = self.media_store or (self.workdir / "media_store")
        media_store.mkdir(parents=True, exist_ok=True)
        lines = [
            "source:", "  mode: synapse_db", f"  synapse_db_url: '{self.synapse_dsn}'",
            f"  media_store_path: {media_store}", "  statement_timeout: 10s",
            "archive:", f"  database_url: '{self.archive_dsn}'",
        ]
        if self.storage == "file":
            lines += ["  storage_backend: file", f"  storage_path: {self.workdir / 'archive_media'}"]
        else:
            url = CLOSED_STORAGE_URL if self.storage == "idle" else self.supabase_url
            key = "unused" if self.storage == "idle" else self.service_key
            lines += ["  storage_backend: supabase", "supabase:", f"  url: '{url}'", f"  service_role_key: '{key}'"]
        lines += [
            "matrix:", "  homeserver_url: 'http://127.0.0.1:9'",
            "rooms: []",
            "processing:", f"  batch_size: {self.batch_size}", f"  poll_interval: {self.poll_interval}",
            f"  concurrent_uploads: {self.concurrent_uploads}",
            # Idle mode: a refused bucket is retried rarely, so the uploader stays quiet.
            f"  retry_delay: {'10m' if self.storage == 'idle' else '1s'}", "  download_media: false",
            "logging:", f"  level: {self.log_level}",
            "daemon:", "  stop_timeout: 30s", "  startup_timeout: 30s",
        ]
        path = self.workdir / "mxarchiver.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path


class Daemon:
    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path, self.log_path = config_path, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, stack: procs.Cleanup) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
        with self.log_path.open("ab") as log:
            self.started_at = time.time()
            self.proc = subprocess.Popen([executable(), "--config", str(self.config_path), "run"],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True, cwd=self.config_path.parent)
        stack.callback(self.stop, label=f"stop mxarchiverd (pid {self.proc.pid})")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mxarchiverd run exited with {self.proc.returncode}; log {self.log_path}:\n"
                               f"{self.tail()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = procs.stop_popen(self.proc)
        self.proc = None
        return code

    def pids(self) -> list[int]:
        """The supervisor and every descendant (workers, the fork server)."""
        return procs.tree(self.pid) if self.proc is not None else []

    def roles(self) -> dict[int, str]:
        return {pid: procs.cmdline(pid) for pid in self.pids()}

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


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
