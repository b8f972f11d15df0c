"""A real PgBouncer in transaction mode in front of the test PostgreSQL, as Supabase's
pooler (Supavisor, port 6543) sits in front of the archive.

Loaded as a pytest plugin (``tests.support.pgbouncer``):

- ``--archive-via-pgbouncer`` (or ``MXARCHIVERD_TEST_ARCHIVE_VIA=pgbouncer``): every
  ``fresh_db`` (the archive database of the tests) is reached through PgBouncer, so
  the daemon, `status`, `verify` and the tests' own checks all go through it; tests
  without a ``fresh_db`` are deselected (they would run exactly as without it), and so
  are those marked ``direct_archive`` (they act on server backends, which a pooler shares).
- ``pgbouncer`` (session): a :class:`PgBouncer` started on loopback, stopped by PID.

Transaction mode with a small pool: session state (SET, advisory session locks,
prepared statements) does not survive a transaction there, which is the point.
Debian 12's PgBouncer (1.18) has no support for protocol-level prepared statements,
so the tests' own connections do not prepare either (the daemon never does).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support import processes
from tests.support.postgres import LOCAL_HOST, OS_USER, PgServer, free_port
from tests.support.processes import ProcessId

OPTION = "--archive-via-pgbouncer"
VARIABLE = "MXARCHIVERD_TEST_ARCHIVE_VIA"
POOL_SIZE = 5
START_TIMEOUT_S = 20
INSTALL_HINT = "apt-get install pgbouncer"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(OPTION, action="store_true", default=False,
                     help="reach every test archive database through a real PgBouncer in transaction mode")


def via_pgbouncer(config: pytest.Config) -> bool:
    return bool(config.getoption(OPTION)) or os.environ.get(VARIABLE) == "pgbouncer"


def pytest_configure(config: pytest.Config) -> None:
    if via_pgbouncer(config):
        # psycopg prepares a statement run 5 times on one connection; PgBouncer 1.18
        # in transaction mode cannot keep it. The tests' own helpers must not either.
        from psycopg import _preparing
        _preparing.PrepareManager.prepare_threshold = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With the option, only tests with an archive database (fresh_db) run: the others
    would run exactly as without it (tests/run's second pass stays short)."""
    if not via_pgbouncer(config):
        return
    def through_pgbouncer(item: pytest.Item) -> bool:
        return "fresh_db" in getattr(item, "fixturenames", ()) and item.get_closest_marker("direct_archive") is None
    keep = [item for item in items if through_pgbouncer(item)]
    dropped = [item for item in items if not through_pgbouncer(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str | None:
    return "archive databases: through PgBouncer (transaction mode)" if via_pgbouncer(config) else None


def find_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if Path(p).exists()), None)
    if not found:
        raise RuntimeError(f"pgbouncer is not installed. Install it: {INSTALL_HINT}")
    return found


@dataclass
class PgBouncer:
    root: Path
    port: int
    target: PgServer
    proc: ProcessId | None = None

    def config_text(self) -> str:
        server = make_conninfo(host=self.target.host, port=self.target.port, user=self.target.user,
                               **({"password": self.target.password} if self.target.password else {}))
        return "\n".join([
            "[databases]",
            f"* = {server}",
            "[pgbouncer]",
            f"listen_addr = {LOCAL_HOST}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = any",
            "pool_mode = transaction",
            f"default_pool_size = {POOL_SIZE}",
            "max_client_conn = 1000",
            "ignore_startup_parameters = extra_float_digits",
            f"admin_users = {self.target.user}",
            f"logfile = {self.root / 'pgbouncer.log'}",
            f"pidfile = {self.root / 'pgbouncer.pid'}",
            "",
        ])

    def dsn_for(self, dsn: str) -> str:
        """The same database, through PgBouncer."""
        params = conninfo_to_dict(dsn)
        params.update(host=LOCAL_HOST, port=str(self.port))
        params.pop("password", None)
        return make_conninfo(**params)

    def start(self) -> PgBouncer:
        config = self.root / "pgbouncer.ini"
        config.write_text(self.config_text())
        command = [find_pgbouncer(), "-d", str(config)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            command[1:1] = ["-u", OS_USER]
            shutil.chown(self.root, user=OS_USER)
        result = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
                                start_new_session=True)
        if result.returncode != 0:
            raise RuntimeError(f"pgbouncer did not start: {result.stdout}{result.stderr}{self.log_tail()}")
        self._wait_accepting()
        return self

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            pid_file = self.root / "pgbouncer.pid"
            try:
                if self.proc is None and pid_file.exists():
                    self.proc = processes.identify(int(pid_file.read_text().strip()))
                with psycopg.connect(self.dsn_for(self.target.dsn("postgres")), connect_timeout=3,
                                     prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                return
            except (psycopg.OperationalError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer does not answer on port {self.port}:\n{self.log_tail()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            processes.terminate(self.proc, grace_s=10)
            self.proc = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "pgbouncer.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def pgbouncer(pg_server: PgServer) -> Iterator[PgBouncer]:
    root = Path(tempfile.mkdtemp(prefix="mxa-pgbouncer-"))
    os.chmod(root, 0o755)
    bouncer = PgBouncer(root, free_port(), pg_server)
    try:
        yield bouncer.start()
    finally:
        bouncer.stop()
        shutil.rmtree(root, ignore_errors=True)
