"""Synapse's real schema: start a real Synapse once, pg_dump --schema-only, cache it.

The dump is cached under bench/.cache/ per Synapse and PostgreSQL version, so
only the first run of any benchmark pays for a Synapse start (~10-60 s).
"""
from __future__ import annotations

import secrets
import subprocess
import tempfile
import shutil
from pathlib import Path

import psycopg
import yaml

from benchlib import CACHE_DIR
from tests.support import synapse as real
from tests.support.postgres import PgServer, dbname_of, free_port


def synapse_version() -> str:
    from importlib.metadata import version
    return version("matrix-synapse")


def schema_sql(server: PgServer) -> bytes:
    major = server.version().split(".")[0]
    path = CACHE_DIR / f"synapse-{synapse_version()}-pg{major}-schema.sql"
    if not path.exists():
        print(f"bench: no cached Synapse schema ({path.name}); starting a real Synapse once to create it")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(_dump_from_real_synapse(server))
        tmp.rename(path)
    return path.read_bytes()


def _dump_from_real_synapse(server: PgServer) -> bytes:
    dsn = server.create_database("schema_synapse", c_locale=True)
    workdir = Path(tempfile.mkdtemp(prefix="mxa-bench-synapse-"))
    config = real.build_config(workdir, free_port(), server, dbname_of(dsn), secrets.token_hex(16))
    if server.password:
        config["database"]["args"]["password"] = server.password
    (workdir / "log.yaml").write_text(yaml.safe_dump(real._log_config(workdir / "homeserver.log")))
    config_path = workdir / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    real._write_signing_key(workdir / "signing.key")
    proc = real._start(config_path, workdir / "stdout.log")
    try:
        base_url = config["public_baseurl"].rstrip("/")
        real._wait_ready(base_url, proc, [workdir / "stdout.log", workdir / "homeserver.log"])
        missing = real.missing_tables(dsn)
        if missing:
            raise RuntimeError(f"Synapse's schema lacks tables the archiver reads: {missing}")
    finally:
        real._stop(proc)
    try:
        assert server.bindir is not None  # open_server always knows it
        dump = subprocess.run([str(server.bindir / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
                               dsn], check=True, capture_output=True, timeout=120).stdout
    finally:
        server.drop_database(dsn)
        shutil.rmtree(workdir, ignore_errors=True)
    # Recent pg_dump writes psql meta-commands (\restrict); a plain connection cannot run them.
    return b"".join(line for line in dump.splitlines(keepends=True) if not line.startswith(b"\\"))


def create_synapse_db(server: PgServer, prefix: str = "synapse") -> str:
    """A new database with Synapse's schema and nothing in it; returns its DSN."""
    dsn = server.create_database(prefix, c_locale=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema_sql(server))
    return dsn
