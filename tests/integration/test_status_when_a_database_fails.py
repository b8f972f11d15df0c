"""`mxarchiverd status` when a database is down, refuses the password or is not migrated:
one line naming which database (never the password), with --json an object with an
"error" field, and the exit code the README documents (69 unavailable, 65 not migrated)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from mxarchiverd.exitcodes import ExitCode
from mxarchiverd.archive.migrations import migrate
from tests.support.password_pg import PasswordServer
from tests.support.postgres import free_port

REPO = Path(__file__).parents[2]
WRONG_PASSWORD = "Wr0ng-Pa55word-xyz"


def status(tmp_path: Path, synapse: str, archive: str, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.yaml"
    config.write_text(f"source:\n  synapse_db_url: '{synapse}'\narchive:\n  database_url: '{archive}'\n"
                      f"  storage_path: {tmp_path / 'media'}\n")
    return subprocess.run([sys.executable, "-m", "mxarchiverd", "--config", str(config), "status", *extra],
                          capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)


def nowhere() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"


@pytest.fixture
def migrated(fresh_db: str) -> str:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
    return fresh_db


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_archive_database_down(tmp_path: Path, migrated: str) -> None:
    line = assert_one_line(status(tmp_path, migrated, nowhere()), ExitCode.UNAVAILABLE, "archive database")
    assert "Connection refused" in line


def test_synapse_database_down(tmp_path: Path, migrated: str) -> None:
    assert_one_line(status(tmp_path, nowhere(), migrated), ExitCode.UNAVAILABLE, "Synapse database")


def test_json_gives_an_object_with_an_error(tmp_path: Path, migrated: str) -> None:
    result = status(tmp_path, nowhere(), migrated, "--json")
    assert result.returncode == ExitCode.UNAVAILABLE
    found = json.loads(result.stdout)
    assert found["database"] == "synapse" and "Synapse database" in found["error"]
    assert found["exit_code"] == ExitCode.UNAVAILABLE


def test_a_wrong_password_is_named_and_not_shown(tmp_path: Path, migrated: str,
                                                 password_server: PasswordServer) -> None:
    for extra in ((), ("--json",)):
        result = status(tmp_path, migrated, password_server.dsn(WRONG_PASSWORD), *extra)
        assert result.returncode == ExitCode.UNAVAILABLE
        shown = result.stdout + result.stderr
        assert "password authentication failed" in shown and "archive database" in shown
        assert WRONG_PASSWORD not in shown and "Traceback" not in shown
        if extra:
            assert json.loads(result.stdout)["database"] == "archive"
        else:
            assert_one_line(result, ExitCode.UNAVAILABLE)


def test_an_archive_that_is_not_migrated(tmp_path: Path, fresh_db: str) -> None:
    assert_one_line(status(tmp_path, fresh_db, fresh_db), ExitCode.SCHEMA_MISMATCH, "archive database",
                    "mxarchiverd migrate")
