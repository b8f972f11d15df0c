"""PostgreSQL for the benchmarks: a private cluster (default) or a server given by DSN.

The private cluster keeps the benchmark away from other users of the machine's
server and lets us preload pg_stat_statements. Unlike the test suite's cluster it
keeps fsync and synchronous_commit ON: commit cost is part of what we measure.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from benchlib import procs
from tests.support.pg import find_pg_bindir, free_port

HOST = "127.0.0.1"
SUPERUSER = "postgres"


@dataclass
class Server:
    """A server we may create and drop databases on (trust or DSN credentials)."""

    admin_dsn: str
    bindir: Path
    # Set for a private cluster: its server processes' CPU time can be measured.
    postmaster_pid: int | None = None
    created: set[str] = field(default_factory=set)

    def dsn(self, dbname: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=dbname)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10)

    def create_database(self, prefix: str, *, c_locale: bool = False) -> str:
        name = f"bench_{prefix}_{secrets.token_hex(4)}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if c_locale:  # Synapse refuses any other collation
            query += sql.SQL(" WITH TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        with self.admin() as conn:
            conn.execute(query)
        self.created.add(name)
        return self.dsn(name)

    def drop_database(self, dsn_or_name: str) -> None:
        name = conninfo_to_dict(dsn_or_name).get("dbname", dsn_or_name) if "=" in dsn_or_name or "://" in dsn_or_name \
            else dsn_or_name
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.discard(name)

    def drop_all(self) -> None:
        for name in sorted(self.created):
            try:
                self.drop_database(name)
            except psycopg.Error as exc:
                print(f"bench: could not drop database {name}: {exc}")

    def version(self) -> str:
        with self.admin() as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    def settings(self, *names: str) -> dict[str, str]:
        with self.admin() as conn:
            rows = conn.execute("SELECT name, setting || COALESCE(unit, '') FROM pg_settings WHERE name = ANY(%s)",
                                (list(names),)).fetchall()
        return dict(rows)


class PrivateCluster:
    """initdb + pg_ctl in a temp dir, run as `postgres` when we are root (initdb refuses root)."""

    def __init__(self, extra_options: dict[str, str] | None = None) -> None:
        self.bindir = find_pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="mxa-bench-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self.run_as = SUPERUSER if os.geteuid() == 0 else None
        self.options = {
            "listen_addresses": HOST, "unix_socket_directories": str(self.root),
            "shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all",
            "max_connections": "200", **(extra_options or {}),
        }
        self.pid: int | None = None

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)

    def start(self) -> Server:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            os.chmod(self.root, 0o755)
        result = self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
                           "-A", "trust", "-E", "UTF8", "--no-sync")
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout}{result.stderr}")
        with (self.datadir / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {self.port}\n")
            for key, value in self.options.items():
                conf.write(f"{key} = '{value}'\n")
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                           "-w", "-t", "60", "start")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{self._log_tail()}")
        self.pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        return Server(make_conninfo(host=HOST, port=self.port, user=SUPERUSER, dbname="postgres"), self.bindir,
                      postmaster_pid=self.pid)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.datadir.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30", "stop")
        if self.pid is not None and procs.alive(self.pid):
            procs.kill_tree(self.pid)  # pg_ctl could not stop the postmaster we started
        shutil.rmtree(self.root, ignore_errors=True)


def open_server(stack: procs.Cleanup, admin_dsn: str | None) -> Server:
    """The server to benchmark on: `admin_dsn` (a superuser DSN) or a new private cluster."""
    if admin_dsn:
        server = Server(admin_dsn, find_pg_bindir())
    else:
        cluster = PrivateCluster()
        stack.callback(cluster.stop, label="stop private PostgreSQL")
        server = cluster.start()
        _wait_accepting(server)
    stack.callback(server.drop_all, label="drop benchmark databases")
    return server


def _wait_accepting(server: Server, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with server.admin():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
