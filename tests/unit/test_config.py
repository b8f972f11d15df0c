"""Config: seed 000's file, every problem at once with its key path, secrets (never printed), overrides."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mxarchiverd.config import ConfigError, load_config
from mxarchiverd.config.render import render_yaml
from mxarchiverd.config.units import MimePattern, mime_allowed, parse_duration, parse_size

ARCHIVE_PASSWORD = "Arch%Pa55word"
SYNAPSE_PASSWORD = "Syn%Pa55word"
SEED_000 = (Path(__file__).parent.parent / "support" / "seed000_config.yaml").read_text()
SEED_ENV = {
    "ARCHIVER_PASSWORD": "pw-one", "SUPABASE_URL": "https://proj.supabase.co",
    "SUPABASE_SERVICE_ROLE_KEY": "service-key-secret", "SUPABASE_ANON_KEY": "anon-key-secret",
    "SUPABASE_JWT_SECRET": "jwt-secret-value",
    "SUPABASE_DB_URL": "postgresql://postgres:db-pass-secret@db.proj.supabase.co:6543/postgres",
}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_seed_000_example_is_accepted_with_its_variables(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SEED_000), SEED_ENV)
    assert config.supabase.url == "https://proj.supabase.co"
    assert config.supabase.storage.file_size_limit == 100 * 1024 * 1024
    assert [str(m) for m in config.supabase.storage.allowed_mime_types][:2] == ["image/*", "video/*"]
    assert [(r.room_id, r.backfill) for r in config.rooms] == [
        ("!example:matrix.radx.dev", True), ("!whatsapp_bridge:matrix.radx.dev", False)]
    assert config.processing.sync_timeout == 30.0  # the seed writes milliseconds
    assert config.processing.retry_delay == 5.0
    assert config.archive_dsn == SEED_ENV["SUPABASE_DB_URL"]
    assert config.archive.storage_backend == "supabase"


def test_rendered_config_masks_every_secret(tmp_path: Path) -> None:
    text = render_yaml(load_config(write(tmp_path, SEED_000), SEED_ENV))
    for secret in ("pw-one", "service-key-secret", "anon-key-secret", "jwt-secret-value", "db-pass-secret"):
        assert secret not in text
    assert "postgresql://postgres:***@db.proj.supabase.co:6543/postgres" in text


def test_five_mistakes_are_all_reported_with_key_paths(tmp_path: Path) -> None:
    text = """
rooms:
  - room_id: "example:matrix.radx.dev"
processing:
  bach_size: 50
  max_file_size: "lots"
  retry_attempts: -1
supabase:
  storage:
    allowed_mime_types: ["image"]
archive:
  database_url: postgresql:///archive
"""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    paths = [path for path, _ in caught.value.problems]
    assert sorted(paths) == sorted([
        "rooms[0].room_id", "processing.bach_size", "processing.max_file_size",
        "processing.retry_attempts", "supabase.storage.allowed_mime_types[0]"])
    assert "did you mean 'batch_size'" in caught.value.render()
    assert 'expected a room id starting with "!"' in caught.value.render()


def test_room_version_12_ids_without_server_part_are_valid(tmp_path: Path) -> None:
    text = "archive: {database_url: 'postgresql:///a'}\nrooms:\n  - room_id: '!X9Z0eoWSYEPczkmMNcOQwpkzGlPG-mK9fwhktTu6tcc'\n"
    assert load_config(write(tmp_path, text), {}).rooms[0].room_id.startswith("!X9Z0")


def test_unset_variable_names_the_key_and_default_syntax_works(tmp_path: Path) -> None:
    text = "archive:\n  database_url: ${ARCHIVE_DB}\nsupabase:\n  storage:\n    bucket: ${BUCKET:-media-archive}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert caught.value.problems[0] == ("archive.database_url", "environment variable ARCHIVE_DB is not set "
                                      "(write ${ARCHIVE_DB:-default} for a default)")
    config = load_config(write(tmp_path, text), {"ARCHIVE_DB": "postgresql:///a"})
    assert config.supabase.storage.bucket == "media-archive"


def test_secret_file_variant_reads_a_credential_file(tmp_path: Path) -> None:
    (tmp_path / "dburl").write_text("postgresql://arch:from-file@h/db\n")
    text = f"archive:\n  database_url_file: {tmp_path / 'dburl'}\nmatrix:\n  password_file: /nonexistent/x\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert caught.value.problems[0][0] == "matrix.password_file"
    config = load_config(write(tmp_path, f"archive:\n  database_url_file: {tmp_path / 'dburl'}\n"), {})
    assert config.archive_dsn == "postgresql://arch:from-file@h/db"


def test_both_inline_and_file_secret_is_an_error(tmp_path: Path) -> None:
    text = "archive:\n  database_url: a\n  database_url_file: /x\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert caught.value.problems[0] == ("archive.database_url", "give either database_url or database_url_file, not both")


def test_seed_001_environment_variables_override_the_file(tmp_path: Path) -> None:
    env = {"SYNAPSE_DB_URL": "postgresql:///syn", "WHATSAPP_DB_URL": "postgresql:///wa",
           "POLL_INTERVAL_MS": "5000", "BATCH_SIZE": "100", "MEDIA_STORE_PATH": "/srv/media",
           "DOWNLOAD_MEDIA": "false", "MONITORED_ROOMS": "!a:x, !b:y",
           "SUPABASE_URL": "https://p.supabase.co", "SUPABASE_KEY": "k"}
    config = load_config(write(tmp_path, "processing: {batch_size: 7}\narchive: {database_url: 'postgresql:///d'}\n"), env)
    assert config.source.synapse_db_url and config.source.synapse_db_url.value == "postgresql:///syn"
    assert config.source.bridge_db_url and config.source.bridge_db_url.value == "postgresql:///wa"
    assert config.processing.poll_interval == 5.0 and config.processing.batch_size == 100
    assert str(config.source.media_store_path) == "/srv/media" and config.processing.download_media is False
    assert [r.room_id for r in config.rooms] == ["!a:x", "!b:y"]
    assert config.supabase.service_role_key and config.supabase.service_role_key.value == "k"


def test_config_path_from_environment_and_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"MXARCHIVER_CONFIG": str(tmp_path / "nope.yaml")})
    assert "does not exist" in caught.value.render()


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "rooms: [\n  - a: b\n"), {})
    assert caught.value.problems[0][0].startswith("line ")


@pytest.mark.parametrize("text,expected", [("100MB", 104857600), ("1.5KiB", 1536), (42, 42), ("7", 7), ("1G", 1073741824)])
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1MB", "10XB", True])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_parse_duration_units() -> None:
    assert parse_duration("500ms") == 0.5 and parse_duration("2m") == 120 and parse_duration("7d") == 604800
    assert parse_duration(30000, bare_unit="ms") == 30.0
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_mime_wildcards_ignore_parameters() -> None:
    patterns = (MimePattern.parse("image/*"), MimePattern.parse("application/pdf"))
    assert mime_allowed(patterns, "image/png") and mime_allowed(patterns, "application/pdf; charset=x")
    assert not mime_allowed(patterns, "video/mp4") and mime_allowed((), "video/mp4")


def test_unparsable_dsn_does_not_print_the_password(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"source:\n  synapse_db_url: 'postgresql://syn:{SYNAPSE_PASSWORD}@127.0.0.1/synapse'\n"
        f"archive:\n  database_url: 'postgresql://arch:{ARCHIVE_PASSWORD}@127.0.0.1/archive'\n"
        f"  storage_path: {tmp_path / 'media'}\n")
    for command in ("migrate", "status"):
        result = subprocess.run([sys.executable, "-m", "mxarchiverd", "--config", str(config), command],
                                capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
        output = result.stdout + result.stderr
        assert result.returncode != 0, command
        assert "Pa55word" not in output, f"{command} printed a password:\n{output[-400:]}"
