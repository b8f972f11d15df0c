"""Connections to the archive database: the only code that reads its address.

Everything that talks to the archive goes through this package (the gateway),
so `config.archive_dsn` is read here and nowhere else (a test checks it).
"""
from __future__ import annotations

import time

import psycopg
from psycopg_pool import ConnectionPool

from mxarchiverd.config import Config
from mxarchiverd.db import connect, connect_with_retry, open_pool


def archive_dsn(config: Config) -> str:
    dsn = config.archive_dsn
    assert dsn is not None  # config validation requires one
    return dsn


def open_archive(config: Config, *, purpose: str, deadline: float | None = None,
                 autocommit: bool = False) -> psycopg.Connection:
    """One connection; with a `deadline` (monotonic) it waits for the database until then."""
    if deadline is None:
        return connect(archive_dsn(config), purpose=purpose, autocommit=autocommit)
    return connect_with_retry(archive_dsn(config), purpose=purpose, deadline=deadline, autocommit=autocommit)


def startup_deadline(config: Config) -> float:
    return time.monotonic() + config.daemon.startup_timeout


def archive_pool(config: Config, *, purpose: str, size: int) -> ConnectionPool:
    """A checked pool (db.open_pool) that waits for the database up to daemon.startup_timeout."""
    return open_pool(archive_dsn(config), purpose, size, config.daemon.startup_timeout)
