"""Checks before the supervisor starts any child (DESIGN.md §2: boot errors).

Runs in the supervisor process and closes every connection before returning:
the supervisor must hold none while children run. Databases get the start-up
grace period (daemon.startup_timeout) to come up, as after a host reboot.
"""
from __future__ import annotations

import logging
import time

from mxarchiverd.archive.connection import open_archive
from mxarchiverd.archive.migrations import migrate
from mxarchiverd.config import Config, ConfigError
from mxarchiverd.db import connect_with_retry
from mxarchiverd.media.store_check import KEY, check_media_store

log = logging.getLogger(__name__)


def preflight(config: Config) -> None:
    """Migrate the archive schema and check that the source is readable.

    Raises DatabaseUnavailable (exit 69), SchemaMismatch (exit 65), ArchivePrivilegeError
    (77) or ConfigError (78: a media store that cannot serve Synapse's local media).
    """
    deadline = time.monotonic() + config.daemon.startup_timeout
    with open_archive(config, purpose="preflight", deadline=deadline, autocommit=True) as conn:
        for migration in migrate(conn):
            log.info("archive schema: applied %03d_%s", migration.version, migration.name)
    if config.source.mode != "synapse_db":
        return  # the bot's homeserver is the poller's to wait for (with the stage healthy)
    assert config.source.synapse_db_url is not None
    with connect_with_retry(config.source.synapse_db_url.value, purpose="preflight synapse", deadline=deadline,
                            read_only_timeout=config.source.statement_timeout) as conn:
        conn.execute("SELECT 1 FROM events LIMIT 1")
        conn.rollback()
        verdict = check_media_store(config, conn)
    if verdict.problem:
        raise ConfigError([(KEY, verdict.problem)], str(config.path or "the environment"))
    if verdict.warning:
        log.warning("%s: %s", KEY, verdict.warning)
