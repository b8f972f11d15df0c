"""The archiver of the quickstart: its config file, then `mxarchiverd run` through the shared launcher.

tests/support/daemon.py starts it (the .venv's console script, its own session, a
clean environment: seed 001's override variables are dropped) and polls
`mxarchiverd status --json` until it has caught up.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qs_postgres import ARCHIVE_DB, SYNAPSE_DB
from qs_procs import QuickstartError
from tests.support.daemon import Daemon, DaemonExited
from tests.support.postgres import Cluster

CONFIG_NAME = "mxarchiverd.yaml"
LOG_NAME = "mxarchiverd.log"

# The end of both sample configs (this one and ./quickstart --bot's, qs_bot.py).
SAMPLE_RUN_SETTINGS = """\
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

""" + SAMPLE_RUN_SETTINGS


def prepare(data_dir: Path, cluster: Cluster, media_store: Path, storage: Path, homeserver_url: str) -> Daemon:
    """The launcher, with data_dir/mxarchiverd.yaml written (not started yet)."""
    daemon = Daemon(data_dir, config_path=data_dir / CONFIG_NAME, log_path=data_dir / LOG_NAME)
    daemon.write_config(CONFIG_TEMPLATE.format(
        synapse_db_url=cluster.url(SYNAPSE_DB), archive_db_url=cluster.url(ARCHIVE_DB),
        media_store_path=media_store, storage_path=storage, homeserver_url=homeserver_url,
    ))
    return daemon


def wait_caught_up(daemon: Daemon, timeout_s: float, min_messages: int = 1) -> dict[str, Any]:
    """`status --json` says caught up with messages archived; a QuickstartError if it exits or times out."""
    try:
        return daemon.wait_caught_up(timeout_s, min_messages=min_messages)
    except (DaemonExited, TimeoutError) as exc:
        raise QuickstartError(str(exc)) from None
