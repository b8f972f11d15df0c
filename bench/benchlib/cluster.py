"""PostgreSQL for the benchmarks: a private cluster (default) or a server given by DSN.

The private cluster (tests/support/postgres.py) keeps the benchmark away from other
users of the machine's server and lets us preload pg_stat_statements. Unlike the
test suite's cluster it keeps fsync and synchronous_commit ON: commit cost is part
of what we measure.
"""
from __future__ import annotations

import sys

from benchlib import procs
from tests.support.postgres import Cluster, PgServer, find_bindir

DATABASE_PREFIX = "bench_"
SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all",
    "max_connections": "200",
}


def open_server(stack: procs.Cleanup, admin_dsn: str | None, settings: dict[str, str] | None = None) -> PgServer:
    """The server to benchmark on: `admin_dsn` (a superuser DSN) or a new private cluster (plus `settings`)."""
    if admin_dsn:
        server = PgServer.from_dsn(admin_dsn, bindir=find_bindir(), database_prefix=DATABASE_PREFIX)
    else:
        cluster = Cluster.temporary("mxa-bench-pg-", fsync=True, settings={**SETTINGS, **(settings or {})})
        stack.callback(cluster.destroy, label="stop private PostgreSQL")
        server = cluster.create()
        server.database_prefix = DATABASE_PREFIX
    stack.callback(lambda: _drop_all(server), label="drop benchmark databases")
    return server


def _drop_all(server: PgServer) -> None:
    for problem in server.drop_all_created():
        print(f"bench: could not drop database {problem}", file=sys.stderr)
