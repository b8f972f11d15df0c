"""Connections to the archive and source databases.

Every connection disables server-side prepared statements (prepare_threshold=None):
Supabase's pooler on port 6543 (Supavisor/PgBouncer in transaction mode) cannot
keep them across transactions. Session settings are therefore set per transaction
with SET LOCAL, never per connection.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from mxarchiverd.exitcodes import ExitCode


class DatabaseUnavailable(Exception):
    """A database stayed unreachable; the message names which one, never its password."""

    exit_code = ExitCode.UNAVAILABLE


class DatabaseMisconfigured(Exception):
    """libpq refused a value of the connection string: no retry or restart can help."""

    exit_code = ExitCode.CONFIG


# libpq's (and psycopg's) wording when it refuses an option's value before any network I/O.
_REFUSED_OPTION = re.compile(r'^(?:connection is bad: )?(?:'
                             r'invalid integer value "[^"]*" for connection option "(?P<option>\w+)"'
                             r'|invalid (?P<named>\w+) value|invalid (?P<port>port) number'
                             r'|could not match \d+ (?P<ports>port) numbers)')


def refused_option(message: str) -> str | None:
    """The connection option a libpq error refuses, if it is that kind of error."""
    match = _REFUSED_OPTION.match(message)
    if match is None:
        return None
    return next(name for name in match.groups() if name)


def connect(dsn: str, *, purpose: str, autocommit: bool = False, connect_timeout: int = 10,
            read_only_timeout: float | None = None) -> psycopg.Connection:
    """Open one connection tagged with what it is for (visible in pg_stat_activity).

    read_only_timeout: for one-off reads of a source database (status, verify): every
    transaction read-only, every statement bounded. Sources are direct connections,
    so session options are fine there.
    """
    options: dict[str, Any] = {}
    if read_only_timeout is not None:
        options["options"] = read_only_options(read_only_timeout)
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            prepare_threshold=None,
            application_name=f"mxarchiverd {purpose}"[:63],
            connect_timeout=connect_timeout,
            **options,
        )
    except psycopg.ProgrammingError:
        # libpq's parse errors quote the connection string, password included.
        raise DatabaseUnavailable(f"{purpose} database: the connection string cannot be parsed") from None
    except psycopg.OperationalError as exc:
        option = refused_option(first_line(exc))
        if option is None:
            raise
        raise DatabaseMisconfigured(f"{purpose} database: libpq refuses the value of {option!r} in the connection"
                                    " string") from None


def read_only_options(statement_timeout: float) -> str:
    """libpq `options` for a source connection: every transaction read-only, every
    statement bounded, whatever the role may do (DESIGN.md invariant 6). Sources are
    direct connections (not through a pooler), so startup options are fine there."""
    return (f"-c default_transaction_read_only=on "
            f"-c statement_timeout={max(1, int(statement_timeout * 1000))}")


def connect_with_retry(
    dsn: str, *, purpose: str, deadline: float, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep, autocommit: bool = False,
    read_only_timeout: float | None = None,
) -> psycopg.Connection:
    """Retry with capped backoff until `deadline` (a clock() value), then raise DatabaseUnavailable."""
    delay = 0.5
    while True:
        try:
            return connect(dsn, purpose=purpose, autocommit=autocommit, read_only_timeout=read_only_timeout)
        except psycopg.OperationalError as exc:
            if clock() + delay > deadline:
                raise DatabaseUnavailable(f"{purpose} database unreachable: {first_line(exc)}") from None
            sleep(delay)
            delay = min(delay * 2, 5.0)


def scalar(cursor: psycopg.Cursor[Any]) -> Any:
    """The one value of a statement that always returns a row (count, EXISTS, RETURNING of an upsert)."""
    row = cursor.fetchone()
    if row is None:
        raise psycopg.DataError("expected a row, the statement returned none")
    return row[0]


def first_line(exc: BaseException) -> str:
    """libpq errors are multi-line; the first line says what went wrong without the DSN."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect_source(dsn: str, *, purpose: str, deadline: float, statement_timeout: float) -> psycopg.Connection:
    """A connection to a source database (Synapse's, the bridge's) for single-statement reads.

    Autocommit plus session defaults (read-only, statement timeout): each read is
    one statement and one round trip in its own short transaction, so an idle
    poll costs one statement and no snapshot outlives its query.
    """
    return connect_with_retry(dsn, purpose=purpose, deadline=deadline, autocommit=True,
                              read_only_timeout=statement_timeout)


def open_pool(dsn: str, purpose: str, size: int, timeout: float, *, options: str | None = None) -> ConnectionPool:
    """A pool that checks a connection (one empty query) before it lends it: after an
    outage or a restart of the server, or a pooler closing idle clients, the connections
    it kept are dead, and without the check each would fail the job it is lent to.

    options: libpq startup options, for a source's read-only session (read_only_options);
    never for the archive, which may sit behind a pooler that refuses them."""
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": None,
                              "application_name": f"mxarchiverd {purpose}"[:63]}
    if options is not None:
        kwargs["options"] = options
    pool = ConnectionPool(dsn, min_size=1, max_size=size, open=False, name=purpose,
                          check=ConnectionPool.check_connection, kwargs=kwargs)
    try:
        pool.open(wait=True, timeout=max(timeout, 1.0))
    except Exception:  # noqa: BLE001 - psycopg_pool raises PoolTimeout after its own retries
        pool.close()
        raise DatabaseUnavailable(f"{purpose} database unreachable") from None
    return pool
