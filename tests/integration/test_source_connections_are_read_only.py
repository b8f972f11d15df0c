"""Every connection the stages open to Synapse's and the bridge's databases is read-only
(DESIGN.md invariant 6), even when the role behind it could write: the tests connect as
the superuser, and every write through those connections is refused by the server."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.config import Config
from mxarchiverd.archive.migrations import migrate
from mxarchiverd.preflight import preflight
from mxarchiverd.workers.enricher import Enricher
from mxarchiverd.workers.poller import Poller
from mxarchiverd.workers.uploader import Uploader
from tests.support.pipeline import write_config

pytestmark = pytest.mark.synapse
WRITES = [
    "CREATE TABLE mxarchiverd_write_probe (x int)",
    "INSERT INTO write_target (x) VALUES (1)",
    "UPDATE write_target SET x = 2",
    "DELETE FROM write_target",
]


@pytest.fixture
def config(synapse_schema_db: str, bridge_db: str, fresh_db: str, tmp_path: Path) -> Config:
    for dsn in (synapse_schema_db, bridge_db):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE write_target (x int)")
            conn.execute("INSERT INTO write_target VALUES (0)")
            # The role could write: it is the superuser, and the table is its own.
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    with psycopg.connect(fresh_db, autocommit=True, prepare_threshold=None) as conn:
        migrate(conn)
    return write_config(tmp_path, synapse_schema_db, fresh_db, source_extra=f"  bridge_db_url: '{bridge_db}'\n")


def assert_read_only(conn: psycopg.Connection) -> None:
    for statement in WRITES:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            if conn.autocommit:
                conn.execute(statement)
            else:
                with conn.transaction():
                    conn.execute(statement)
    assert conn.execute("SELECT count(*) FROM write_target").fetchone()[0] == 1  # reads work


def unchanged(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        probe = conn.execute("SELECT to_regclass('mxarchiverd_write_probe')").fetchone()[0]
        return probe is None and conn.execute("SELECT x FROM write_target").fetchall() == [(0,)]


@contextmanager
def opened(stage_class: type, config: Config) -> Iterator[object]:
    stage = stage_class(config, lambda: None)
    stage.open()
    try:
        yield stage
    finally:
        stage.close()


def test_the_pollers_synapse_and_bridge_connections(config: Config, synapse_schema_db: str, bridge_db: str) -> None:
    with opened(Poller, config) as poller:
        follower = poller.source  # type: ignore[attr-defined]
        assert_read_only(follower.synapse.conn)
        assert_read_only(follower.bridge.conn)
    assert unchanged(synapse_schema_db) and unchanged(bridge_db)


def test_the_enrichers_synapse_and_bridge_connections(config: Config, synapse_schema_db: str, bridge_db: str) -> None:
    with opened(Enricher, config) as enricher:
        assert_read_only(enricher.state.reader.conn)  # type: ignore[attr-defined]
        assert_read_only(enricher.bridge.conn)  # type: ignore[attr-defined]
    assert unchanged(synapse_schema_db) and unchanged(bridge_db)


def test_every_connection_of_the_uploaders_synapse_pool(config: Config, synapse_schema_db: str) -> None:
    with opened(Uploader, config) as uploader:
        pool = uploader.synapse  # type: ignore[attr-defined]
        held = [pool.getconn() for _ in range(config.processing.concurrent_uploads)]
        try:
            for conn in held:
                assert_read_only(conn)
        finally:
            for conn in held:
                pool.putconn(conn)
    assert unchanged(synapse_schema_db)


def test_the_preflight_check_of_synapse(config: Config, synapse_schema_db: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor's own check before any stage starts (it closes its connections itself)."""
    import mxarchiverd.preflight as module

    checked: list[str] = []
    real: Callable[..., psycopg.Connection] = module.connect_with_retry

    def checking(dsn: str, *, purpose: str, **kwargs: object) -> psycopg.Connection:
        conn = real(dsn, purpose=purpose, **kwargs)
        if purpose == "preflight synapse":
            assert_read_only(conn)
            conn.rollback()
            checked.append(purpose)
        return conn

    monkeypatch.setattr(module, "connect_with_retry", checking)
    preflight(config)
    assert checked == ["preflight synapse"] and unchanged(synapse_schema_db)
