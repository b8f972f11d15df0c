"""The quickstart's private PostgreSQL cluster (initdb/pg_ctl), as tests/support/pg.py runs one.

It listens on loopback TCP only: no Unix socket, so a long checkout path cannot
exceed the socket path limit and nothing clashes with a system server's socket.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from qs_procs import LOOPBACK, ProcessId, QuickstartError, identify, is_running, tail, terminate
from tests.support.pg import find_pg_bindir

SUPERUSER = "postgres"
# initdb refuses to run as root, so root runs the cluster as this OS user.
OS_USER = "postgres"
SYNAPSE_DB = "synapse"
ARCHIVE_DB = "mxarchive"
START_TIMEOUT_S = 60
# Where the cluster goes when the postgres user cannot reach the checkout (e.g. under /root).
FALLBACK_PREFIX = "/var/tmp/mxarchiverd-quickstart-"


@dataclass
class Cluster:
    bindir: Path
    root: Path
    port: int
    run_as: str | None
    postmaster: ProcessId | None = None

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
        pm = data.get("postmaster")
        return cls(Path(data["bindir"]), Path(data["root"]), data["port"], data["run_as"],
                   ProcessId(pm["pid"], pm["start_time"]) if pm else None)

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{dbname}"

    def dsn(self, dbname: str) -> str:
        return make_conninfo(host=LOOPBACK, port=self.port, user=SUPERUSER, dbname=dbname)

    def _run(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        # A new session: Ctrl-C in the user's terminal must not reach the postmaster;
        # the quickstart stops it itself, in order, after the daemon.
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout_s,
                              start_new_session=True)

    def initdb(self) -> None:
        result = self._run("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "-A", "trust",
                           "-E", "UTF8", "--no-sync")
        if result.returncode != 0:
            raise QuickstartError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        # fsync off: the sample archive is disposable, and Synapse's schema set-up is much faster.
        options = (f"-p {self.port} -c listen_addresses={LOOPBACK} -c unix_socket_directories='' "
                   "-c fsync=off")
        result = self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options,
                           "-w", "-t", str(START_TIMEOUT_S), "start", timeout_s=START_TIMEOUT_S + 30)
        if result.returncode != 0:
            raise QuickstartError(f"PostgreSQL did not start on {LOOPBACK}:{self.port}:\n"
                                  f"{result.stderr}{tail(self.logfile, 15)}")
        self.postmaster = self._read_postmaster()

    def _read_postmaster(self) -> ProcessId | None:
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return identify(pid)

    def running(self) -> bool:
        return self.postmaster is not None and is_running(self.postmaster)

    def stop(self) -> None:
        if not self.running():
            return
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30", "stop", timeout_s=60)
        if self.postmaster is not None and is_running(self.postmaster):
            # pg_ctl could not stop it: stop the postmaster we started, by PID.
            terminate(self.postmaster, grace_s=10)

    def create_databases(self) -> None:
        # Synapse refuses any collation but C on PostgreSQL.
        c_locale = sql.SQL(" WITH TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SYNAPSE_DB)) + c_locale)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ARCHIVE_DB)))


def find_bindir() -> Path:
    try:
        return find_pg_bindir()
    except RuntimeError:
        raise QuickstartError("PostgreSQL server binaries (initdb, pg_ctl) not found. "
                              "Install them: apt-get install postgresql") from None


def os_user() -> str | None:
    """Who runs the cluster: ourselves, or the postgres OS user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise QuickstartError(f"running as root, but there is no '{OS_USER}' OS user to run PostgreSQL as "
                              "(initdb refuses root). Install the server package (apt-get install postgresql), "
                              "which creates it, or run ./quickstart as an ordinary user.") from None
    return OS_USER


def prepare_root(data_dir: Path, run_as: str | None) -> Path:
    """The cluster's directory: data_dir/pg, or a symlinked one the postgres user can reach."""
    root = data_dir / "pg"
    root.mkdir()
    if run_as is None:
        return root
    _give_to(root, run_as)
    if _can_write(run_as, root):
        return root
    # A parent such as /root (mode 700) stops the postgres user; keep the cluster
    # outside and leave a symlink, so that quickstart-data still shows where it is.
    root.rmdir()
    outside = Path(FALLBACK_PREFIX + hashlib.sha256(str(data_dir).encode()).hexdigest()[:12])
    shutil.rmtree(outside, ignore_errors=True)
    outside.mkdir(mode=0o700)
    _give_to(outside, run_as)
    root.symlink_to(outside)
    return outside


def remove_outside_root(data_dir: Path) -> None:
    """Delete a (stopped) cluster that prepare_root put outside data_dir, and its symlink.

    Nothing of a finished run should linger outside the data directory, where
    nobody would look for it.
    """
    link = data_dir / "pg"
    if link.is_symlink():
        target = os.readlink(link)
        if target.startswith(FALLBACK_PREFIX):
            shutil.rmtree(target, ignore_errors=True)
            link.unlink()


def _give_to(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _can_write(user: str, path: Path) -> bool:
    probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(path)], check=False)
    return probe.returncode == 0
