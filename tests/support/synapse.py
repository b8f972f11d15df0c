"""A real Synapse homeserver for tests, on loopback, with its own PostgreSQL DB.

Loaded as a pytest plugin (``tests.support.synapse``; needs ``tests.support.pg``).
Fixtures:

- ``synapse`` (session): a running :class:`SynapseServer`. Starting Synapse
  costs many seconds, so one instance serves the whole test session; tests keep
  apart by creating their own users and rooms.
- ``synapse_db`` (function): an autocommit psycopg connection to Synapse's DB.
- ``limited_synapse`` (module): another Synapse with low rate limits (429 tests).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from tests.support.matrix_client import MatrixClient
from tests.support.postgres import PgServer, dbname_of, free_port
from tests.support.waiting import wait_for

SERVER_NAME = "archive.test"
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 20
# Tables the archiver reads; their absence means Synapse's schema changed.
REQUIRED_TABLES = (
    "events", "event_json", "redactions", "event_relations", "stream_positions",
    "ex_outlier_stream", "rejections", "room_memberships", "current_state_events",
    "local_media_repository", "remote_media_cache",
)
# High enough that no test ever hits a limit.
UNLIMITED = {"per_second": 100000, "burst_count": 1000000}


@dataclass
class SynapseServer:
    base_url: str
    server_name: str
    db_dsn: str
    media_store_path: Path
    config_path: Path
    log_path: Path
    registration_shared_secret: str
    startup_seconds: float

    def register(self, localpart: str, admin: bool = False,
                 displayname: str | None = None) -> MatrixClient:
        """Create a user through the shared-secret admin API; return it logged in."""
        password = secrets.token_urlsafe(16)
        url = f"{self.base_url}/_synapse/admin/v1/register"
        with httpx.Client(timeout=30.0) as http:
            nonce = _checked_json(http.get(url))["nonce"]
            body: dict[str, Any] = {
                "nonce": nonce, "username": localpart, "password": password, "admin": admin,
                "mac": registration_mac(self.registration_shared_secret, nonce, localpart,
                                        password, admin),
            }
            if displayname is not None:
                body["displayname"] = displayname
            reply = _checked_json(http.post(url, json=body))
        return MatrixClient(self.base_url, reply["user_id"], reply["access_token"],
                            reply.get("device_id"), password)

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"


def registration_mac(secret: str, nonce: str, user: str, password: str, admin: bool) -> str:
    """HMAC-SHA1 over nonce, user, password and admin flag, NUL-separated."""
    flag = "admin" if admin else "notadmin"
    message = b"\x00".join(part.encode() for part in (nonce, user, password, flag))
    return hmac.new(secret.encode(), message, hashlib.sha1).hexdigest()


def _checked_json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> "
                           f"{response.status_code}: {response.text[:500]}")
    return response.json()


# Config ----------------------------------------------------------------------


def _write_signing_key(path: Path) -> None:
    from signedjson.key import encode_signing_key_base64, generate_signing_key

    key = generate_signing_key("a_" + secrets.token_hex(2))
    path.write_text(f"{key.alg} {key.version} {encode_signing_key_base64(key)}\n")


def _log_config(log_path: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_path),
                              "formatter": "plain", "level": "WARNING"}},
        "root": {"level": "WARNING", "handlers": ["file"]},
    }


def _rate_limits() -> dict[str, Any]:
    return {
        "rc_message": UNLIMITED, "rc_registration": UNLIMITED, "rc_room_creation": UNLIMITED,
        "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
        "rc_joins_per_room": UNLIMITED,
        "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED, "per_issuer": UNLIMITED},
        "rc_third_party_invite": UNLIMITED, "rc_admin_redaction": UNLIMITED,
        "rc_media_create": UNLIMITED, "rc_3pid_validation": UNLIMITED,
        "rc_key_requests": UNLIMITED, "rc_presence": {"per_user": UNLIMITED},
        "rc_delayed_event_mgmt": UNLIMITED, "rc_reports": UNLIMITED,
        "rc_user_directory": UNLIMITED, "rc_profile": UNLIMITED,
    }


def build_config(workdir: Path, port: int, pg: PgServer, dbname: str,
                 shared_secret: str, rate_limits: dict[str, Any] | None = None) -> dict[str, Any]:
    """Synapse's config; `rate_limits` replaces some of the unlimited rc_* settings."""
    config: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [{
            "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
            "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}],
        }],
        "database": {"name": "psycopg2", "args": {
            "host": pg.host, "port": pg.port, "user": pg.user, "dbname": dbname,
            "cp_min": 1, "cp_max": 5,
        }},
        "log_config": str(workdir / "log.yaml"),
        "media_store_path": str(workdir / "media_store"),
        "enable_media_repo": True,
        "max_upload_size": "100M",
        "signing_key_path": str(workdir / "signing.key"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_hex(32),
        "form_secret": secrets.token_hex(32),
        "enable_registration": False,
        "report_stats": False,
        "suppress_key_server_warning": True,
        "trusted_key_servers": [],
        # Empty allow-list: never talk to another homeserver.
        "federation_domain_whitelist": [],
        "url_preview_enabled": False,
        "presence": {"enabled": False},
    }
    config.update(_rate_limits())
    config.update(rate_limits or {})
    return config


# Process ---------------------------------------------------------------------


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"<{path} unreadable>"


def _child_env() -> dict[str, str]:
    # Synapse would talk to a test's systemd notify socket if it inherited one.
    drop = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _start(config_path: Path, output_path: Path) -> subprocess.Popen[bytes]:
    with output_path.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config_path)],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=config_path.parent, env=_child_env(),
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _responding(base_url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"Synapse exited with code {proc.returncode} during startup")
    try:
        return httpx.get(f"{base_url}/_matrix/client/versions", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes], logs: list[Path]) -> None:
    try:
        wait_for(lambda: _responding(base_url, proc), START_TIMEOUT_S,
                 "Synapse to answer /_matrix/client/versions", interval_s=0.2)
    except (TimeoutError, RuntimeError) as exc:
        tails = "\n".join(f"--- {p.name} ---\n{_tail(p)}" for p in logs)
        raise RuntimeError(f"{exc}\n{tails}") from exc


def missing_tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    present = {name for (name,) in rows}
    return [name for name in REQUIRED_TABLES if name not in present]


@contextmanager
def running_synapse(pg_server: PgServer, workdir: Path,
                    rate_limits: dict[str, Any] | None = None) -> Iterator[SynapseServer]:
    """Start a Synapse on a free loopback port with its own database; stop it after."""
    db_dsn = pg_server.create_database("synapse", c_locale=True)
    port, secret = free_port(), secrets.token_hex(16)
    config = build_config(workdir, port, pg_server, dbname_of(db_dsn), secret, rate_limits)
    log_path, output_path = workdir / "homeserver.log", workdir / "stdout.log"
    (workdir / "log.yaml").write_text(yaml.safe_dump(_log_config(log_path)))
    config_path = workdir / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    _write_signing_key(workdir / "signing.key")
    base_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = _start(config_path, output_path)
    try:
        _wait_ready(base_url, proc, [output_path, log_path])
        server = SynapseServer(
            base_url=base_url, server_name=SERVER_NAME, db_dsn=db_dsn,
            media_store_path=Path(config["media_store_path"]), config_path=config_path,
            log_path=log_path, registration_shared_secret=secret,
            startup_seconds=time.monotonic() - started,
        )
        missing = missing_tables(db_dsn)
        assert not missing, f"Synapse schema lacks tables {missing}"
        yield server
    finally:
        _stop(proc)
        pg_server.drop_database(dbname_of(db_dsn))


@pytest.fixture(scope="session")
def synapse(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[SynapseServer]:
    with running_synapse(pg_server, tmp_path_factory.mktemp("synapse")) as server:
        yield server


@pytest.fixture
def synapse_db(synapse: SynapseServer) -> Iterator[psycopg.Connection]:
    with psycopg.connect(synapse.db_dsn, autocommit=True) as conn:
        yield conn


# Low enough that a bot joining a few rooms, or logging in twice, gets 429s.
LOW = {"per_second": 0.5, "burst_count": 1}
LOW_RATE_LIMITS: dict[str, Any] = {
    "rc_joins": {"local": LOW, "remote": LOW},
    "rc_login": {"address": LOW, "account": LOW, "failed_attempts": UNLIMITED},
    "rc_message": {"per_second": 1, "burst_count": 3},
}


@pytest.fixture(scope="module")
def limited_synapse(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[SynapseServer]:
    """A second Synapse whose rc_joins, rc_login and rc_message answer 429 readily."""
    with running_synapse(pg_server, tmp_path_factory.mktemp("synapse-limited"),
                         rate_limits=LOW_RATE_LIMITS) as server:
        yield server
