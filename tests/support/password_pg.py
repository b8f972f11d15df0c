"""A private PostgreSQL cluster that checks passwords (the shared test server trusts everyone).

For tests of what an operator meets with a wrong password. One role, PASSWORD_ROLE, logs
in with scram-sha-256; the superuser keeps trust, so the fixture can set things up.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.support.postgres import LOCAL_HOST, SUPERUSER, Cluster

PASSWORD_ROLE = "archiver_pw"
RIGHT_PASSWORD = "Right-Pa55word"


@dataclass(frozen=True)
class PasswordServer:
    cluster: Cluster

    def dsn(self, password: str, dbname: str = "postgres") -> str:
        return make_conninfo(host=LOCAL_HOST, port=self.cluster.port, user=PASSWORD_ROLE, password=password,
                             dbname=dbname)


@pytest.fixture(scope="module")
def password_server() -> Iterator[PasswordServer]:
    cluster = Cluster.temporary("mxa-pg-password-")
    try:
        cluster.create()
        hba = cluster.datadir / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_ROLE} {LOCAL_HOST}/32 scram-sha-256\n" + hba.read_text())
        admin = make_conninfo(host=LOCAL_HOST, port=cluster.port, user=SUPERUSER, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{RIGHT_PASSWORD}'")
            conn.execute("SELECT pg_reload_conf()")
        yield PasswordServer(cluster)
    finally:
        cluster.destroy()
