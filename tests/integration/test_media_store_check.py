"""`run` and `check-config` refuse a source.media_store_path that does not exist or does
not look like Synapse's while Synapse has local media (exit 78, naming the key): with
such a store every media job went dead within seconds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mxarchiverd.exitcodes import ExitCode
from tests.integration.test_archive_synapse import wait_bound_covers
from tests.integration.test_media import send_file
from tests.support.synapse import SynapseServer

pytestmark = pytest.mark.synapse
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def local_media(synapse: SynapseServer) -> str:
    """Synapse has at least one local upload (the session's Synapse is shared)."""
    alice = synapse.register("alice_store_check")
    room = alice.create_room(name="store check")
    event, mxc = send_file(alice, room, os.urandom(2000), "image/png", "s.png", "m.image")
    wait_bound_covers(synapse, event)
    return mxc


def mxarchiverd(tmp_path: Path, synapse: SynapseServer, archive: str, command: str,
                source_extra: str = "", extra: str = "") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.yaml"
    config.write_text(f"source:\n  synapse_db_url: '{synapse.db_dsn}'\n{source_extra}"
                      f"archive:\n  database_url: '{archive}'\n  storage_path: {tmp_path / 'media'}\n"
                      f"daemon:\n  startup_timeout: 10s\n{extra}")
    return subprocess.run([sys.executable, "-m", "mxarchiverd", "--config", str(config), command],
                          capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)


def store_with_local_content(tmp_path: Path) -> Path:
    store = tmp_path / "other-store"
    (store / "local_content" / "ab" / "cd").mkdir(parents=True)
    (store / "local_content" / "ab" / "cd" / "efghijklmnop").write_bytes(b"not this server's")
    return store


@pytest.mark.parametrize(("store", "says"), [
    ("missing", "does not exist"),
    ("empty", "does not look like Synapse's media store (no local_content/"),
    ("unset", "not set, and without matrix.access_token"),
    ("foreign", "none of the"),
])
@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_media_store_that_cannot_serve_synapse_local_media_is_refused(
        local_media: str, synapse: SynapseServer, fresh_db: str, tmp_path: Path, store: str, says: str,
        command: str) -> None:
    (tmp_path / "empty").mkdir()
    path = {"missing": tmp_path / "missing", "empty": tmp_path / "empty",
            "foreign": store_with_local_content(tmp_path), "unset": None}[store]
    result = mxarchiverd(tmp_path, synapse, fresh_db, command, f"  media_store_path: {path}\n" if path else "")
    assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
    assert "source.media_store_path" in result.stderr and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_synapse_store_passes_and_an_unset_store_with_a_token_downloads(
        local_media: str, synapse: SynapseServer, fresh_db: str, tmp_path: Path) -> None:
    result = mxarchiverd(tmp_path, synapse, fresh_db, "check-config", f"  media_store_path: {synapse.media_store_path}\n")
    assert result.returncode == 0 and "media_store_path" not in result.stderr, result.stderr
    # Without a store every file comes over the media API: fine when there is a token.
    with_token = mxarchiverd(tmp_path, synapse, fresh_db, "check-config", extra="matrix:\n  access_token: syt_x\n")
    assert with_token.returncode == 0, with_token.stderr


def test_a_store_that_lacks_the_newest_files_is_only_a_warning_with_a_token(
        local_media: str, synapse: SynapseServer, fresh_db: str, tmp_path: Path) -> None:
    result = mxarchiverd(tmp_path, synapse, fresh_db, "check-config",
                         f"  media_store_path: {store_with_local_content(tmp_path)}\n",
                         "matrix:\n  access_token: syt_x\n")
    assert result.returncode == 0, result.stderr
    assert "# warning: source.media_store_path" in result.stdout and "media API" in result.stdout
