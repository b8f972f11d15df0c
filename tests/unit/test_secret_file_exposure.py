"""A file holding secrets that group or others can read gives a warning at start
(config/exposure.py); the warning never shows the secret."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mxarchiverd.config.exposure import exposure_warnings, holds_secret, inline_secrets, readable_by, secret_files

PASSWORD = "hunter2-archive-pw"


@pytest.mark.parametrize(("value", "secret"), [
    (f"postgresql://archiver:{PASSWORD}@db.example.org:6543/postgres", True),
    (f"host=db user=archiver password={PASSWORD}", True),
    ("eyJhbGciOiJIUzI1NiJ9.service-key", True),
    ("postgresql:///synapse", False),                # peer authentication: nothing secret
    ("postgresql://archiver@db/postgres", False),
    ("postgresql://archiver:${ARCHIVE_PW}@db/postgres", False),  # from the environment
    ("${SUPABASE_KEY}", False),
    ("", False),
    (None, False),
])
def test_which_values_hold_a_secret(value: object, secret: bool) -> None:
    assert holds_secret(value) is secret


def test_inline_secrets_and_secret_files_are_found_by_their_declarations() -> None:
    data = {"archive": {"database_url": f"postgresql://u:{PASSWORD}@h/db"},
            "supabase": {"service_role_key_file": "/run/credentials/mxarchiverd/key", "anon_key": "public-anon"},
            "source": {"synapse_db_url": "postgresql:///synapse"}, "processing": {"batch_size": 10}}
    assert inline_secrets(data) == ["supabase.anon_key", "archive.database_url"]
    assert secret_files(data) == [("supabase.service_role_key_file", Path("/run/credentials/mxarchiverd/key"))]
    assert inline_secrets({"archive": "not a mapping"}) == [] and inline_secrets(None) == []


@pytest.mark.parametrize(("mode", "gid", "members", "expected"), [
    (0o600, 100, [], None),
    (0o400, 100, [], None),
    (0o644, 100, [], "others"),
    (0o604, 100, [], "others"),
    (0o640, 100, [], None),          # the daemon's own group, nobody else in it
    (0o640, 100, ["alice"], "group"),
    (0o640, 0, [], "group"),         # another group (root's)
])
def test_who_may_read(mode: int, gid: int, members: list[str], expected: str | None) -> None:
    assert readable_by(mode, gid, own_gid=100, group_members=members) == expected


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_warnings_name_the_file_keys_and_mode_but_not_the_secret(tmp_path: Path) -> None:
    key = write(tmp_path / "service_key", "a-service-key-value", 0o644)
    config = write(tmp_path / "config.yaml", f"archive:\n  database_url: 'postgresql://u:{PASSWORD}@h/db'\n"
                                              f"supabase:\n  service_role_key_file: {key}\n", 0o644)
    warnings = exposure_warnings(config)
    assert len(warnings) == 2
    assert str(config) in warnings[0] and "archive.database_url" in warnings[0] and "0644" in warnings[0]
    assert str(key) in warnings[1] and "supabase.service_role_key_file" in warnings[1]
    assert not any(PASSWORD in w or "a-service-key-value" in w for w in warnings)
    os.chmod(config, 0o600)
    os.chmod(key, 0o600)
    assert exposure_warnings(config) == []


def test_no_warning_without_inline_secrets(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", "archive:\n  database_url: 'postgresql://u:${PW}@h/db'\n", 0o644)
    assert exposure_warnings(config) == []


def test_run_warns_at_start(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml",
                   f"archive:\n  database_url: 'postgresql://u:{PASSWORD}@127.0.0.1:1/db'\n"
                   "  storage_path: /tmp/unused\ndaemon:\n  startup_timeout: 0s\n", 0o644)
    result = subprocess.run([sys.executable, "-m", "mxarchiverd", "--config", str(config), "run"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "MXARCHIVER_CONFIG": ""})
    assert result.returncode == 69, result.stderr
    assert "WARNING" in result.stderr and "readable by others (mode 0644)" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
