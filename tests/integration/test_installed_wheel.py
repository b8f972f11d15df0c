"""The package as a user installs it: a wheel built from the source tree, installed into a
fresh venv (dependencies from the package index), run from a directory outside the source
tree. `tests/run` itself uses an editable install, which would hide a module the wheel
forgot (the uploader's storage package once was: no media was ever archived)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_archive_synapse import wait_bound_covers
from tests.support.daemon import Daemon
from tests.support.storage_double import StorageDouble
from tests.support.synapse import SynapseServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]
BUCKET = "matrix-media"
# Build leftovers and tool caches are not the source tree: a stale build/ would put
# files into the wheel that the tree no longer has.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache",
                                    ".ruff_cache", ".pytest_cache", "quickstart-data", ".cache", "results")
# Python variables that would let the installed daemon see the source tree or another install.
FOREIGN_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


@dataclass(frozen=True)
class Install:
    venv: Path
    outside: Path  # a working directory that is not in the source tree

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def daemon(self) -> Path:
        return self.venv / "bin" / "mxarchiverd"

    def environ(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in FOREIGN_VARIABLES}


def run(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """The README's install: build the wheel, put it into a new venv with its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    tree, wheels, outside = root / "tree", root / "wheels", root / "elsewhere"
    shutil.copytree(REPO, tree, ignore=NOT_SOURCE)
    outside.mkdir()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", wheels, tree],
        cwd=outside)
    [wheel] = wheels.glob("mxarchiverd-*.whl")
    run([sys.executable, "-m", "venv", root / "venv"], cwd=outside)
    install = Install(root / "venv", outside)
    # pip's cache is left on, so the dependencies come from it after the first run. With
    # the bot extra (matrix-nio), so that every module of the tree can be imported.
    run([install.python, "-m", "pip", "install", "--disable-pip-version-check", "-q", f"{wheel}[bot]"], cwd=outside,
        env=install.environ())
    return install


def source_modules() -> list[str]:
    """Every module of the source tree by import name; migrations/ ships as mxarchiverd.migrations."""
    names = []
    for path in sorted((REPO / "mxarchiverd").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    names += ["mxarchiverd.migrations"] if (REPO / "migrations" / "__init__.py").exists() else []
    return names


# A __main__ module runs the program when imported: it is found, not imported.
IMPORT_EACH = """
import importlib, importlib.util, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        if name.endswith(".__main__"):
            found[name] = importlib.util.find_spec(name).origin
        else:
            found[name] = importlib.import_module(name).__file__
    except Exception as exc:
        found[name] = "ERROR " + type(exc).__name__ + ": " + str(exc)
print(json.dumps(found))
"""


def test_every_module_of_the_source_tree_imports_from_the_installed_wheel(installed: Install) -> None:
    modules = source_modules()
    assert "mxarchiverd.sinks.storage.supabase" in modules and "mxarchiverd.workers.uploader" in modules
    # -I: no script directory, no PYTHON* variables, no user site: only the venv's packages.
    found = json.loads(run([installed.python, "-I", "-c", IMPORT_EACH, *modules], cwd=installed.outside))
    failed = {name: where for name, where in found.items() if where.startswith("ERROR")}
    assert not failed, failed
    outside_venv = {name: where for name, where in found.items() if not where.startswith(str(installed.venv))}
    assert not outside_venv, f"imported from outside the installed venv: {outside_venv}"
    sql = run([installed.python, "-I", "-c", "import importlib.resources as r; print(sorted(p.name for p in"
               " r.files('mxarchiverd.migrations').iterdir() if p.name.endswith('.sql')))"], cwd=installed.outside)
    assert sql.strip() == str(sorted(p.name for p in (REPO / "migrations").glob("*.sql")))


@pytest.fixture
def daemon_from_wheel(installed: Install, synapse: SynapseServer, storage_double: StorageDouble, fresh_db: str,
                      tmp_path: Path) -> Iterator[tuple[Daemon, str, list[tuple[str, str, str]], list[str]]]:
    """Messages and files in a new room, then the installed `mxarchiverd run` (not yet stopped)."""
    alice = synapse.register("alice_installed")
    room = alice.create_room(name="installed")
    texts = [alice.send_text(room, f"from the wheel {i}") for i in range(3)]
    files = []
    for mime, name, data in (("image/png", "photo.png", b"\x89PNG\r\n\x1a\n" + os.urandom(4000)),
                             ("application/pdf", "doc.pdf", b"%PDF-1.4 " + os.urandom(20_000))):
        mxc = alice.upload(data, mime, name)
        event = alice.send(room, "m.room.message", {"msgtype": "m.file", "body": name, "url": mxc,
                                                    "info": {"mimetype": mime}})
        files.append((event, mxc, hashlib.sha256(data).hexdigest()))
    wait_bound_covers(synapse, files[-1][0])
    daemon = Daemon(tmp_path, program=[str(installed.daemon)], cwd=installed.outside, env_base=installed.environ(),
                    notify=True, watchdog_usec=2_000_000)
    daemon.write_config(
        f"source:\n  synapse_db_url: '{synapse.db_dsn}'\n  media_store_path: {synapse.media_store_path}\n"
        f"archive:\n  database_url: '{fresh_db}'\nrooms:\n  - room_id: '{room}'\n"
        f"supabase:\n  url: {storage_double.url}\n  service_role_key: {storage_double.service_key}\n"
        f"  storage:\n    bucket: {BUCKET}\nprocessing:\n  poll_interval: 100ms\n"
        "daemon:\n  startup_timeout: 20s\n  stop_timeout: 20s\n")
    with daemon:
        daemon.start()
        yield daemon, room, files, texts


def test_the_installed_daemon_archives_messages_and_media_run_from_outside_the_source_tree(
        daemon_from_wheel: tuple[Daemon, str, list[tuple[str, str, str]], list[str]],
        storage_double: StorageDouble, fresh_db: str) -> None:
    daemon, room, files, texts = daemon_from_wheel
    daemon.wait_ready(60)
    expected = set(texts) | {event for event, _, _ in files}

    def archived() -> set[str]:
        with psycopg.connect(fresh_db) as conn:
            return {r[0] for r in conn.execute("SELECT event_id FROM archived_messages WHERE room_id = %s", (room,))}

    wait_for(lambda: archived() >= expected, 60, f"messages archived by the installed daemon\n{daemon.tail()}")

    def media() -> dict[str, tuple[str, str]]:
        with psycopg.connect(fresh_db) as conn:
            rows = conn.execute("SELECT event_id, sha256, storage_path FROM archived_media WHERE media_kind = 'file'")
            return {event: (sha, path) for event, sha, path in rows}

    stored = wait_for(lambda: (m := media()) and len(m) == len(files) and m, 60,
                      f"media archived by the installed daemon\n{daemon.tail()}")
    for event, mxc, sha in files:
        assert stored[event] == (sha, mxc.removeprefix("mxc://"))
        assert storage_double.object_bytes_sha256(BUCKET, stored[event][1]) == sha
    assert daemon.stop(30) == 0, daemon.tail()
    assert "Traceback" not in daemon.log(), daemon.tail()
