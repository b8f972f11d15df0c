"""Real PostgreSQL for tests: the machine's server, or a private throwaway cluster.

Loaded as a pytest plugin (``tests.support.pg``); the plain helpers it stands on
are in tests/support/postgres.py. Fixtures:

- ``pg_server`` (session): a :class:`PgServer` able to create and drop databases.
- ``fresh_db`` (function): DSN of a brand-new empty database, dropped afterwards.

With ``--archive-via-pgbouncer`` (tests/support/pgbouncer.py), ``fresh_db`` is the
same database reached through a real PgBouncer in transaction mode.

Set ``MXARCHIVERD_TEST_PG=private`` to skip the local server and always start a
private cluster (useful to exercise that path on a machine that has a server).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.postgres import LOCAL_HOST, Cluster, PgServer, dbname_of

LOCAL_PORT = 5432


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    want_private = os.environ.get("MXARCHIVERD_TEST_PG") == "private"
    local = PgServer(host=LOCAL_HOST, port=LOCAL_PORT)
    if not want_private and local.reachable():
        try:
            yield local
        finally:
            local.drop_all_created()
        return
    # fsync off: test data is disposable and this makes DDL-heavy setup faster.
    cluster = Cluster.temporary("mxa-pg-", fsync=False)
    try:
        yield cluster.create()
    finally:
        cluster.destroy()


@pytest.fixture
def fresh_db(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    from tests.support.pgbouncer import via_pgbouncer

    dsn = pg_server.create_database("t")
    try:
        yield request.getfixturevalue("pgbouncer").dsn_for(dsn) if via_pgbouncer(request.config) else dsn
    finally:
        pg_server.drop_database(dbname_of(dsn))
