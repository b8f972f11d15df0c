"""check-config names every key that is accepted but has no effect in the configured mode
(seed 000's pool_size, anon_key, sync_timeout, ...), so nobody believes a setting works
when nothing reads it; `run` logs the same list as warnings."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mxarchiverd import cli
from mxarchiverd.config import Config, load_config
from mxarchiverd.config.reference import keys_without_effect
from mxarchiverd.config.settings import FILE_STORAGE, OWN_ARCHIVE_URL_UNSET, SUPABASE_STORAGE, walk
from mxarchiverd.exitcodes import ExitCode
from tests.support.postgres import free_port

SEED_000 = (Path(__file__).parent.parent / "support" / "seed000_config.yaml").read_text()
SEED_ENV = {
    "ARCHIVER_PASSWORD": "pw-one", "SUPABASE_URL": "https://proj.supabase.co",
    "SUPABASE_SERVICE_ROLE_KEY": "service-key-secret", "SUPABASE_ANON_KEY": "anon-key-secret",
    "SUPABASE_JWT_SECRET": "jwt-secret-value",
    "SUPABASE_DB_URL": "postgresql://postgres:db-pass-secret@db.proj.supabase.co:6543/postgres",
}
ARCHIVE = "archive:\n  database_url: postgresql:///archive\n"
BOT = "matrix:\n  username: '@a:b'\n  password: pw\n  pickle_key: a-pickle-key-of-16+\n"


def without_effect(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    environ = environ or {}
    config = load_config(str(path), environ)
    return [key for key, _ in keys_without_effect(config)]


def test_seed_000_keys_that_nothing_reads_are_named(tmp_path: Path) -> None:
    assert sorted(without_effect(tmp_path, SEED_000, SEED_ENV)) == [
        "matrix.device_name", "matrix.password", "matrix.username", "processing.sync_timeout",
        "supabase.anon_key", "supabase.database.max_overflow", "supabase.database.pool_size", "supabase.jwt_secret",
    ]


def test_a_config_of_keys_that_all_work_lists_nothing(tmp_path: Path) -> None:
    text = ARCHIVE + "source:\n  media_store_path: /var/lib/synapse/media\nprocessing:\n  batch_size: 100\n"
    assert without_effect(tmp_path, text) == []


def test_storage_keys_of_the_other_backend(tmp_path: Path) -> None:
    file_backend = ARCHIVE + "  storage_path: /srv/media\nsupabase:\n  storage:\n    public_bucket: true\n"
    assert without_effect(tmp_path, file_backend) == ["supabase.storage.public_bucket"]
    supabase = (ARCHIVE + "  storage_backend: supabase\n  storage_path: /srv/media\n"
                "supabase:\n  url: https://p.supabase.co\n  service_role_key: k\n")
    assert without_effect(tmp_path, supabase) == ["archive.storage_path"]


def test_source_keys_of_the_other_mode(tmp_path: Path) -> None:
    text = ARCHIVE + BOT + "source:\n  mode: matrix_sync\n  media_store_path: /m\n  follow_backfill: false\n"
    assert without_effect(tmp_path, text) == ["source.media_store_path", "source.follow_backfill"]


def test_a_connection_string_that_archive_database_url_overrides(tmp_path: Path) -> None:
    text = ARCHIVE + "supabase:\n  database:\n    connection_string: postgresql:///other\n"
    assert without_effect(tmp_path, text) == ["supabase.database.connection_string"]


def test_file_forms_and_environment_overrides_count_as_given(tmp_path: Path) -> None:
    (tmp_path / "anon").write_text("anon-key")
    text = ARCHIVE + f"supabase:\n  anon_key_file: {tmp_path / 'anon'}\n"
    assert without_effect(tmp_path, text) == ["supabase.anon_key"]
    assert without_effect(tmp_path, ARCHIVE + BOT + "source:\n  mode: matrix_sync\n",
                          {"MEDIA_STORE_PATH": "/m"}) == ["source.media_store_path"]


def test_every_need_is_a_fact_the_check_knows() -> None:
    known = {FILE_STORAGE, SUPABASE_STORAGE, OWN_ARCHIVE_URL_UNSET}
    for declared in walk(Config):
        assert set(declared.setting.needs) <= known, declared.path
        if declared.setting.needs or set(declared.setting.modes) != {"synapse_db", "matrix_sync"}:
            assert declared.setting.idle, f"{declared.path} may have no effect but does not say why"


def test_check_config_prints_them_and_run_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ARCHIVE + "supabase:\n  database:\n    pool_size: 10\n")
    assert cli.main(["--config", str(path), "check-config"]) == 0
    out = capsys.readouterr().out
    assert "# no effect in this configuration (accepted, but nothing reads it here):" in out
    assert "#   supabase.database.pool_size: " in out
    # run warns before it starts anything: here it then stops at an archive that is not there.
    path.write_text(f"archive:\n  database_url: postgresql://postgres@127.0.0.1:{free_port()}/x\n"
                    "supabase:\n  database:\n    pool_size: 10\ndaemon:\n  startup_timeout: 0s\n")
    with caplog.at_level(logging.WARNING):
        assert cli.main(["--config", str(path), "run"]) == ExitCode.UNAVAILABLE
    assert any("supabase.database.pool_size has no effect" in r.getMessage() for r in caplog.records)
