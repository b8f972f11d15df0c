"""The quickstart's PostgreSQL: a private cluster (tests/support/postgres.py) kept in the data directory.

It listens on loopback TCP only: no Unix socket, so a long checkout path cannot
exceed the socket path limit and nothing clashes with a system server's socket.
The cluster stays in <data-dir>/pg after the run (its server.log may explain a
failure); --keep leaves it running and --stop stops it from its recorded identity.
"""
from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.postgres import C_LOCALE, Cluster, cluster_user, find_bindir, prepare_root

SYNAPSE_DB = "synapse"
ARCHIVE_DB = "mxarchive"


def new_cluster(data_dir: Path, port: int) -> Cluster:
    """An initialised, not yet started cluster in data_dir/pg (or where the postgres user can reach)."""
    run_as = cluster_user()
    bindir = find_bindir()
    # fsync off: the sample archive is disposable, and Synapse's schema set-up is much faster.
    cluster = Cluster(bindir, prepare_root(data_dir, run_as), port, run_as, socket_dir=None, fsync=False)
    cluster.initdb()
    return cluster


def create_databases(cluster: Cluster) -> None:
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SYNAPSE_DB)) + C_LOCALE)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ARCHIVE_DB)))
