"""Private PostgreSQL clusters (tests/support/postgres.py): a throwaway one, a kept one, a missing server."""
from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from tests.support import postgres
from tests.support.postgres import Cluster, PostgresError, cluster_user, find_bindir, prepare_root


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((postgres.LOCAL_HOST, port)) == 0


def test_a_throwaway_cluster_serves_databases_and_leaves_nothing_behind() -> None:
    cluster = Cluster.temporary("mxa-pg-test-", fsync=False, settings={"max_connections": "30"})
    try:
        server = cluster.create()
        dsn = server.create_database("probe")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert server.settings("fsync", "max_connections") == {"fsync": "off", "max_connections": "30"}
        assert server.postmaster_pid is not None and cluster.running()
        assert server.drop_all_created() == [] and not server.created
    finally:
        cluster.destroy()
    assert not cluster.running() and not listening(cluster.port) and not cluster.root.exists()


def test_a_kept_cluster_is_stopped_from_its_record_and_keeps_its_data(tmp_path: Path) -> None:
    run_as = cluster_user()
    cluster = Cluster(find_bindir(), prepare_root(tmp_path, run_as), postgres.free_port(), run_as)
    try:
        cluster.initdb()
        cluster.start()
        record = cluster.as_dict()
        assert not list(cluster.root.glob(".s.PGSQL.*")), "a TCP-only cluster made a Unix socket"
        recorded = Cluster.from_dict(record)  # what `./quickstart --stop` does in a later process
        assert recorded.running()
        recorded.stop()
        assert not recorded.running() and not cluster.running() and not listening(cluster.port)
        assert (tmp_path / "pg" / "data" / "PG_VERSION").exists(), "stopping must not delete the data"
    finally:
        cluster.stop()
        postgres.remove_outside_root(tmp_path)
    assert not (tmp_path / "pg").is_symlink(), "a cluster kept outside the directory was left behind"


def test_missing_server_binaries_name_the_package_to_install(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without PostgreSQL
    monkeypatch.setattr(postgres, "DEBIAN_BINDIRS", str(tmp_path / "none" / "*" / "bin"))
    with pytest.raises(PostgresError, match="initdb, pg_ctl.*apt-get install postgresql"):
        find_bindir()
