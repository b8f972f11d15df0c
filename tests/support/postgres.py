"""PostgreSQL for tests, bench/ and quickstart.d/: a server to create databases on, and private clusters.

A plain module (no pytest): the benchmarks and the quickstart import it with the
project's .venv python; the pytest fixtures are in tests/support/pg.py.

- :class:`PgServer`: a server reachable over TCP as a superuser; creates and drops databases.
- :class:`Cluster`: a private cluster (initdb, pg_ctl) in a directory of its own,
  on loopback TCP. initdb refuses to run as root, so root runs it as the
  ``postgres`` OS user. It is stopped with pg_ctl, then its postmaster by PID.
"""
from __future__ import annotations

import glob
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support import processes
from tests.support.processes import ProcessId

LOCAL_HOST = "127.0.0.1"
SUPERUSER = "postgres"
# initdb refuses to run as root, so root runs the cluster as this OS user.
OS_USER = "postgres"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
INSTALL_HINT = "apt-get install postgresql"
# Synapse refuses any collation but C on PostgreSQL.
C_LOCALE = sql.SQL(" WITH TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
# Debian's server packages, one directory per major version.
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
# Where a cluster goes when the postgres OS user cannot reach the chosen directory (e.g. under /root).
FALLBACK_PREFIX = "/var/tmp/mxarchiverd-quickstart-"


class PostgresError(RuntimeError):
    """A private cluster could not be set up or run; the message says what to do."""


def dbname_of(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


def free_port() -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        return sock.getsockname()[1]


# A server ----------------------------------------------------------------------


@dataclass
class PgServer:
    """A PostgreSQL server reachable over TCP as a superuser (trust auth, or `password`)."""

    host: str
    port: int
    user: str = SUPERUSER
    password: str | None = None
    # Known for a private cluster: its binaries (pg_dump) and its postmaster (CPU time).
    bindir: Path | None = None
    postmaster_pid: int | None = None
    # Prepended to every database name we create (the benchmarks use "bench_").
    database_prefix: str = ""
    # Databases created through this object, so that a failure cannot leak them.
    created: set[str] = field(default_factory=set)

    @classmethod
    def from_dsn(cls, dsn: str, **kwargs: Any) -> PgServer:
        info = conninfo_to_dict(dsn)
        password = info.get("password")
        return cls(host=str(info.get("host", LOCAL_HOST)), port=int(str(info.get("port", 5432))),
                   user=str(info.get("user", SUPERUSER)), password=str(password) if password else None, **kwargs)

    def dsn(self, dbname: str = "postgres") -> str:
        params = {"password": self.password} if self.password else {}
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=dbname, **params)

    def admin_connect(self) -> psycopg.Connection:
        # CREATE/DROP DATABASE refuse to run inside a transaction block.
        return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10)

    def reachable(self) -> bool:
        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=3):
                return True
        except psycopg.OperationalError:
            return False

    def wait_accepting(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self.admin_connect():
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, prefix: str, *, c_locale: bool = False) -> str:
        """Create ``<database_prefix><prefix>_<random>`` and return its DSN.

        ``c_locale`` builds it from template0 with UTF8 and C collation, which
        Synapse insists on (it refuses to start on any other collation).
        """
        name = f"{self.database_prefix}{prefix}_{secrets.token_hex(6)}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if c_locale:
            query += C_LOCALE
        with self.admin_connect() as conn:
            conn.execute(query)
        self.created.add(name)
        return self.dsn(name)

    def drop_database(self, name_or_dsn: str) -> None:
        name = dbname_of(name_or_dsn) if ("=" in name_or_dsn or "://" in name_or_dsn) else name_or_dsn
        # FORCE: a test may leave connections open (pools, a killed daemon).
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.admin_connect() as conn:
            conn.execute(query)
        self.created.discard(name)

    def drop_all_created(self) -> list[str]:
        """Drop every database we created; the names that could not be dropped (with why)."""
        problems = []
        for name in sorted(self.created):
            try:
                self.drop_database(name)
            except psycopg.Error as exc:
                problems.append(f"{name}: {exc}")
        return problems

    def version(self) -> str:
        with self.admin_connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0])

    def settings(self, *names: str) -> dict[str, str]:
        with self.admin_connect() as conn:
            rows = conn.execute("SELECT name, setting || COALESCE(unit, '') FROM pg_settings WHERE name = ANY(%s)",
                                (list(names),)).fetchall()
        return dict(rows)


# Finding and preparing -----------------------------------------------------------


def find_bindir() -> Path:
    """The directory of initdb and pg_ctl: pg_config's, the newest Debian one, or PATH's."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob(DEBIAN_BINDIRS), reverse=True)]  # newest first
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise PostgresError(f"PostgreSQL server binaries (initdb, pg_ctl) not found. Install them: {INSTALL_HINT}")


def cluster_user() -> str | None:
    """Who runs a cluster: ourselves, or the postgres OS user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresError(f"running as root, but there is no '{OS_USER}' OS user to run PostgreSQL as "
                            f"(initdb refuses root). Install the server package ({INSTALL_HINT}), "
                            "which creates it, or run as an ordinary user.") from None
    return OS_USER


def _give_to(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _can_write(user: str, path: Path) -> bool:
    probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(path)], check=False)
    return probe.returncode == 0


def prepare_root(parent: Path, run_as: str | None, name: str = "pg") -> Path:
    """A kept cluster's directory: parent/name, or a symlinked one the postgres user can reach."""
    root = parent / name
    root.mkdir()
    if run_as is None:
        return root
    _give_to(root, run_as)
    if _can_write(run_as, root):
        return root
    # A parent such as /root (mode 700) stops the postgres user; keep the cluster
    # outside and leave a symlink, so that `parent` still shows where it is.
    root.rmdir()
    outside = Path(FALLBACK_PREFIX + hashlib.sha256(str(parent).encode()).hexdigest()[:12])
    shutil.rmtree(outside, ignore_errors=True)
    outside.mkdir(mode=0o700)
    _give_to(outside, run_as)
    root.symlink_to(outside)
    return outside


def remove_outside_root(parent: Path, name: str = "pg") -> None:
    """Delete a (stopped) cluster that prepare_root put outside `parent`, and its symlink.

    Nothing of a finished run should linger where nobody would look for it.
    """
    link = parent / name
    if link.is_symlink():
        target = os.readlink(link)
        if target.startswith(FALLBACK_PREFIX):
            shutil.rmtree(target, ignore_errors=True)
            link.unlink()


def _quoted(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("'", "''") + "'"


# A private cluster ------------------------------------------------------------------


@dataclass
class Cluster:
    """initdb + pg_ctl in `root`, listening on LOCAL_HOST:`port`."""

    bindir: Path
    root: Path
    port: int
    run_as: str | None
    # Unix socket directory; None: TCP only (a long path cannot pass the socket path limit).
    socket_dir: Path | None = None
    # fsync off for disposable data (tests, quickstart); the benchmarks keep it on.
    fsync: bool = True
    settings: dict[str, str] = field(default_factory=dict)
    postmaster: ProcessId | None = None

    @classmethod
    def temporary(cls, prefix: str = "mxa-pg-", *, fsync: bool = False,
                  settings: dict[str, str] | None = None) -> Cluster:
        """A throwaway cluster in a new temp dir (with its Unix socket there), on a free port."""
        run_as = cluster_user()
        root = Path(tempfile.mkdtemp(prefix=prefix))
        if run_as:
            _give_to(root, run_as)
            os.chmod(root, 0o755)
        return cls(find_bindir(), root, free_port(), run_as, socket_dir=root, fsync=fsync,
                   settings=dict(settings or {}))

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def as_dict(self) -> dict[str, Any]:
        return {"bindir": str(self.bindir), "root": str(self.root), "port": self.port, "run_as": self.run_as,
                "postmaster": self.postmaster.as_dict() if self.postmaster else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cluster:
        """A cluster recorded by as_dict() (enough to stop it; its settings are in its data dir)."""
        pm = data.get("postmaster")
        return cls(Path(data["bindir"]), Path(data["root"]), data["port"], data["run_as"],
                   postmaster=ProcessId.from_dict(pm) if pm else None)

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{LOCAL_HOST}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(host=LOCAL_HOST, port=self.port, user=SUPERUSER, dbname=dbname)

    def server(self, **kwargs: Any) -> PgServer:
        pid = self.postmaster.pid if self.postmaster else None
        return PgServer(LOCAL_HOST, self.port, bindir=self.bindir, postmaster_pid=pid, **kwargs)

    def _run(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        # A new session: Ctrl-C in a terminal must not reach the postmaster; its
        # owner stops it itself, in order, after the programs that use it.
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout_s,
                              start_new_session=True)

    def server_settings(self) -> dict[str, str]:
        """What goes into postgresql.auto.conf: where to listen, fsync, and the extra settings."""
        socket_dir = str(self.socket_dir) if self.socket_dir else ""
        base = {"port": str(self.port), "listen_addresses": LOCAL_HOST, "unix_socket_directories": socket_dir,
                "fsync": "on" if self.fsync else "off"}
        return {**base, **self.settings}

    def initdb(self) -> None:
        result = self._run("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                           "--no-sync")
        if result.returncode != 0:
            raise PostgresError(f"initdb failed:\n{result.stdout}{result.stderr}")
        with (self.datadir / "postgresql.auto.conf").open("a") as conf:
            for key, value in self.server_settings().items():
                conf.write(f"{key} = {_quoted(value)}\n")

    def start(self) -> None:
        result = self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t",
                           str(START_TIMEOUT_S), "start", timeout_s=START_TIMEOUT_S + 30)
        # Read even when pg_ctl failed: it may time out on a server that did start.
        self.postmaster = self._read_postmaster()
        if result.returncode != 0:
            raise PostgresError(f"PostgreSQL did not start on {LOCAL_HOST}:{self.port}:\n"
                                f"{result.stdout}{result.stderr}{self.log_tail()}")

    def create(self) -> PgServer:
        """initdb, start, and wait until it accepts connections; the server to use."""
        self.initdb()
        self.start()
        server = self.server()
        server.wait_accepting()
        return server

    def _read_postmaster(self) -> ProcessId | None:
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return processes.identify(pid)

    def running(self) -> bool:
        return self.postmaster is not None and processes.is_running(self.postmaster)

    def stop(self) -> None:
        """pg_ctl's fast shutdown; if that fails, the postmaster we started, by PID."""
        self.postmaster = self.postmaster or self._read_postmaster()
        if not self.running():
            return
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S), "stop",
                  timeout_s=STOP_TIMEOUT_S + 30)
        if self.postmaster is not None and processes.is_running(self.postmaster):
            backends = processes.tree(self.postmaster.pid)
            # SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL follows if even that hangs.
            if not processes.terminate(self.postmaster, grace_s=10, signum=signal.SIGQUIT):
                processes.kill_all(backends)

    def destroy(self) -> None:
        """Stop it and delete its directory (a throwaway cluster)."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
