"""Real PostgreSQL for tests: the machine's server, or a private throwaway cluster.

Loaded as a pytest plugin (``tests.support.pg``). Fixtures:

- ``pg_server`` (session): a :class:`PgServer` able to create and drop databases.
- ``fresh_db`` (function): DSN of a brand-new empty database, dropped afterwards.

Set ``MXARCHIVERD_TEST_PG=private`` to skip the local server and always start a
private cluster (useful to exercise that path on a machine that has a server).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432
SUPERUSER = "postgres"
PRIVATE_START_TIMEOUT_S = 60


@dataclass
class PgServer:
    """A PostgreSQL server reachable over TCP with trust auth for ``user``."""

    host: str
    port: int
    user: str = SUPERUSER
    # Databases this session created, so that a failed test cannot leak them.
    created: set[str] = field(default_factory=set)

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=dbname)

    def admin_connect(self) -> psycopg.Connection:
        # CREATE/DROP DATABASE refuse to run inside a transaction block.
        return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10)

    def create_database(self, prefix: str, *, c_locale: bool = False) -> str:
        """Create ``<prefix>_<random>`` and return its DSN.

        ``c_locale`` builds it from template0 with UTF8 and C collation, which
        Synapse insists on (it refuses to start on any other collation).
        """
        name = f"{prefix}_{secrets.token_hex(6)}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if c_locale:
            query += sql.SQL(
                " WITH TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        with self.admin_connect() as conn:
            conn.execute(query)
        self.created.add(name)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        # FORCE: a test may leave connections open (pools, a killed daemon).
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.admin_connect() as conn:
            conn.execute(query)
        self.created.discard(name)

    def drop_all_created(self) -> None:
        for name in sorted(self.created):
            self.drop_database(name)


def dbname_of(dsn: str) -> str:
    return conninfo_to_dict(dsn)["dbname"]


def _local_server_reachable() -> bool:
    try:
        with psycopg.connect(
            make_conninfo(host=LOCAL_HOST, port=LOCAL_PORT, user=SUPERUSER, dbname="postgres"),
            connect_timeout=3,
        ):
            return True
    except psycopg.OperationalError:
        return False


def free_port() -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        return sock.getsockname()[1]


def find_pg_bindir() -> Path:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    # Newest major version first.
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) found")


class PrivateCluster:
    """A throwaway cluster in a temp dir; initdb refuses root, so it runs as ``postgres``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="mxa-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self.run_as = SUPERUSER if os.geteuid() == 0 else None

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)

    def _checked(self, *args: str) -> None:
        result = self._run(*args)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._checked(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
                      "-A", "trust", "-E", "UTF8", "--no-sync")
        # fsync off: test data is disposable and this makes DDL-heavy setup faster.
        options = (f"-p {self.port} -c listen_addresses={LOCAL_HOST} "
                   f"-c unix_socket_directories={self.root} -c fsync=off")
        self._checked(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
                      str(self.logfile), "-o", options, "-w", "-t",
                      str(PRIVATE_START_TIMEOUT_S), "start")

    def postmaster_pid(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        pid = self.postmaster_pid()
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast",
                  "-w", "-t", "30", "stop")
        if pid is not None and _pid_alive(pid):
            # pg_ctl could not stop it: kill the postmaster we started, by PID.
            os.kill(pid, 9)
        shutil.rmtree(self.root, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_accepting(server: PgServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with server.admin_connect():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    want_private = os.environ.get("MXARCHIVERD_TEST_PG") == "private"
    if not want_private and _local_server_reachable():
        server = PgServer(host=LOCAL_HOST, port=LOCAL_PORT)
        try:
            yield server
        finally:
            server.drop_all_created()
        return
    cluster = PrivateCluster(find_pg_bindir())
    try:
        cluster.start()
        server = PgServer(host=LOCAL_HOST, port=cluster.port)
        _wait_accepting(server, PRIVATE_START_TIMEOUT_S)
        yield server
    finally:
        cluster.stop()


@pytest.fixture
def fresh_db(pg_server: PgServer) -> Iterator[str]:
    dsn = pg_server.create_database("t")
    try:
        yield dsn
    finally:
        pg_server.drop_database(dbname_of(dsn))
