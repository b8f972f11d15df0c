"""The archiver under test: its config file, `mxarchiverd run`, and `mxarchiverd status`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from qs_postgres import ARCHIVE_DB, SYNAPSE_DB, Cluster
from qs_procs import ProcessId, QuickstartError, identify, tail

# Seed 001's variables override the config file (README, Configuration); a
# developer's shell may carry them for a real deployment, and MXARCHIVER_CONFIG
# would not matter with --config but is dropped for clarity.
OVERRIDING_ENV = (
    "SYNAPSE_DB_URL", "WHATSAPP_DB_URL", "SUPABASE_URL", "SUPABASE_KEY", "POLL_INTERVAL_MS", "BATCH_SIZE",
    "MEDIA_STORE_PATH", "DOWNLOAD_MEDIA", "MONITORED_ROOMS", "MXARCHIVER_CONFIG",
    "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
)
STATUS_TIMEOUT_S = 30
POLL_S = 0.5

CONFIG_TEMPLATE = """\
# Written by ./quickstart: the archiver on the quickstart's private PostgreSQL,
# with media in a local directory. For Supabase, see the end of ./quickstart's output.
source:
  mode: synapse_db
  synapse_db_url: "{synapse_db_url}"
  media_store_path: {media_store_path}
  statement_timeout: 10s

archive:
  database_url: "{archive_db_url}"
  storage_backend: file
  storage_path: {storage_path}

# Only used to download media that is missing from the media store.
matrix:
  homeserver_url: "{homeserver_url}"

rooms: []

processing:
  poll_interval: 200ms
  retry_delay: 1s

logging:
  level: INFO

# Short timeouts: a sample run should fail fast and stop quickly.
daemon:
  heartbeat_timeout: 30s
  stop_timeout: 15s
  startup_timeout: 20s
  restart_backoff_initial: 200ms
  restart_backoff_max: 5s
"""


def write_config(path: Path, cluster: Cluster, media_store: Path, storage: Path, homeserver_url: str) -> Path:
    path.write_text(CONFIG_TEMPLATE.format(
        synapse_db_url=cluster.url(SYNAPSE_DB), archive_db_url=cluster.url(ARCHIVE_DB),
        media_store_path=media_store, storage_path=storage, homeserver_url=homeserver_url,
    ))
    return path


def executable() -> str:
    # The entry point of the venv that runs the quickstart (./quickstart uses .venv).
    return str(Path(sys.executable).parent / "mxarchiverd")


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in OVERRIDING_ENV}


def start(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], ProcessId]:
    with log.open("ab") as output:
        # Its own session: the daemon and its workers form one process group, so
        # that any worker outliving the supervisor can be found and stopped.
        proc = subprocess.Popen([executable(), "--config", str(config), "run"], stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env(),
                                start_new_session=True)
    return proc, identify(proc.pid) or ProcessId(proc.pid, 0)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([executable(), "--config", str(config), *args], capture_output=True, text=True,
                          check=False, env=child_env(), timeout=STATUS_TIMEOUT_S)


def status_json(config: Path) -> dict[str, Any] | None:
    """`mxarchiverd status --json`, or None while it cannot answer (schema not migrated yet)."""
    try:
        result = cli(config, "status", "--json")
    except subprocess.TimeoutExpired:  # a machine under load; the deadline decides
        return None
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return None


def wait_caught_up(config: Path, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> dict[str, Any]:
    """Poll `status --json` until caught_up; fail early if the daemon exits."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] | None = None
    while True:
        if proc.poll() is not None:
            raise QuickstartError(f"mxarchiverd run exited with code {proc.returncode} before catching up. "
                                  f"Its log ({log}):\n{tail(log)}")
        last = status_json(config) or last
        if last and last.get("caught_up") and last.get("messages", 0) > 0:
            return last
        if time.monotonic() >= deadline:
            raise QuickstartError(f"mxarchiverd did not catch up within {timeout_s:.0f}s; last status: "
                                  f"{json.dumps(last)}\nIts log ({log}):\n{tail(log)}")
        time.sleep(POLL_S)
