"""Checks before the supervisor starts any child (DESIGN.md §2: boot errors).

Runs in the supervisor process and closes every connection before returning:
the supervisor must hold none while children run. Databases get the start-up
grace period (daemon.startup_timeout) to come up, as after a host reboot.
"""
from __future__ import annotations

import logging
import time

from mxarchiverd.config import Config
from mxarchiverd.db import connect_with_retry
from mxarchiverd.migrate import migrate

log = logging.getLogger(__name__)


def preflight(config: Config) -> None:
    """Migrate the archive schema and check that the source is readable.

    Raises DatabaseUnavailable (exit 69) or SchemaMismatch (exit 65).
    """
    deadline = time.monotonic() + config.daemon.startup_timeout
    assert config.archive_dsn is not None and config.source.synapse_db_url is not None
    with connect_with_retry(config.archive_dsn, purpose="preflight", deadline=deadline, autocommit=True) as conn:
        for migration in migrate(conn):
            log.info("archive schema: applied %03d_%s", migration.version, migration.name)
    with connect_with_retry(config.source.synapse_db_url.value, purpose="preflight synapse", deadline=deadline,
                            read_only_timeout=config.source.statement_timeout) as conn:
        conn.execute("SELECT 1 FROM events LIMIT 1")
        conn.rollback()
