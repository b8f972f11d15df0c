"""A real Synapse on loopback for the quickstart, configured by tests/support/synapse.py's builder."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from qs_postgres import SYNAPSE_DB
from tests.support.matrix_client import MatrixClient
from tests.support.postgres import Cluster
from tests.support.processes import ProcessId, identify
from tests.support.synapse import (
    SERVER_NAME, SynapseServer, _log_config, _wait_ready, _write_signing_key, build_config,
)

# Synapse's own variables would otherwise point it at a systemd notify socket.
DROPPED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "SYNAPSE_CONFIG_PATH")


@dataclass
class RunningSynapse:
    server: SynapseServer
    proc: subprocess.Popen[bytes]
    ident: ProcessId
    port: int


def write_config(workdir: Path, port: int, cluster: Cluster) -> tuple[Path, dict[str, object]]:
    workdir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(16)
    config = build_config(workdir, port, cluster.server(), SYNAPSE_DB, secret)
    (workdir / "log.yaml").write_text(yaml.safe_dump(_log_config(workdir / "homeserver.log")))
    config_path = workdir / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    _write_signing_key(workdir / "signing.key")
    return config_path, config


def start(workdir: Path, port: int, cluster: Cluster) -> RunningSynapse:
    config_path, config = write_config(workdir, port, cluster)
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    with (workdir / "stdout.log").open("ab") as output:
        # A new session, so that Ctrl-C reaches only the quickstart, which stops
        # Synapse in order (after the daemon that reads its database).
        proc = subprocess.Popen([sys.executable, "-m", "synapse.app.homeserver", "-c", str(config_path)],
                                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, env=env, start_new_session=True)
    ident = identify(proc.pid) or ProcessId(proc.pid, 0)
    server = SynapseServer(
        base_url=f"http://127.0.0.1:{port}", server_name=SERVER_NAME, db_dsn=cluster.dsn(SYNAPSE_DB),
        media_store_path=Path(str(config["media_store_path"])), config_path=config_path,
        log_path=workdir / "homeserver.log", registration_shared_secret=str(config["registration_shared_secret"]),
        startup_seconds=0.0,
    )
    return RunningSynapse(server, proc, ident, port)


def wait_ready(running: RunningSynapse) -> None:
    """Until Synapse answers /versions (it creates its schema first); its log tails on failure."""
    workdir = running.server.config_path.parent
    _wait_ready(running.server.base_url, running.proc, [workdir / "stdout.log", running.server.log_path])


def register_pair(server: SynapseServer) -> tuple[MatrixClient, MatrixClient]:
    """Alice and Bob, created through the shared-secret admin registration API."""
    alice = server.register("alice", displayname="Alice")
    bob = server.register("bob", displayname="Bob")
    return alice, bob
