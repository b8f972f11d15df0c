"""Connections to the archive database: the only code that reads its address.

Everything that talks to the archive goes through this package (the gateway),
so `config.archive_dsn` is read here and nowhere else (a test checks it).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.pq import TransactionStatus
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


@contextmanager
def pipelined_transaction(conn: psycopg.Connection) -> Iterator[None]:
    """A transaction whose BEGIN and COMMIT travel with its statements: on an idle
    autocommit connection, psycopg's pipeline mode with BEGIN ... COMMIT sent as
    statements, so a block that fetches nothing is one round trip and each fetch
    adds one (psycopg's own transaction() in pipeline mode syncs at both ends: two
    more). Otherwise a (sub)transaction of the caller's.

    When a statement fails the server skips the rest, COMMIT included, and the
    transaction is rolled back: all or nothing, as any transaction."""
    if not conn.autocommit or _in_transaction(conn):
        with conn.transaction():
            yield
        return
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            yield
            conn.execute("COMMIT")
    except BaseException:
        # A failed statement leaves the transaction open and aborted (the server skipped
        # COMMIT); a broken connection has nothing left to roll back.
        if not conn.closed and _in_transaction(conn):
            conn.execute("ROLLBACK")
        raise


def _in_transaction(conn: psycopg.Connection) -> bool:
    return conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)
