"""Each setting is declared once: parser, default, reload effect, modes and documentation."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from mxarchiverd.config import Config, load_config
from mxarchiverd.config.reference import keys_without_effect, reference_table
from mxarchiverd.config.settings import Effect, walk

REPO = Path(__file__).resolve().parents[2]


def test_every_field_of_the_model_is_declared() -> None:
    def undeclared(cls: type, prefix: str) -> list[str]:
        missing = []
        for field in dataclasses.fields(cls):
            if field.name in ("path", "given") and cls is Config:
                continue
            declared = field.metadata.get("mxarchiverd")
            if declared is None:
                missing.append(prefix + field.name)
            elif declared.section is not None:
                missing += undeclared(declared.section, f"{prefix}{field.name}.")
        return missing

    assert undeclared(Config, "") == []


def test_every_restart_names_the_roles_it_restarts_and_nothing_else_does() -> None:
    roles = {"poller", "enricher", "dbwriter", "uploader", "lease"}
    for declared in walk(Config):
        setting = declared.setting
        assert setting.doc, declared.path
        if setting.effect is Effect.RESTART:
            assert setting.restarts and setting.restarts <= roles, declared.path
        else:
            assert not setting.restarts, declared.path


def test_the_readme_table_is_the_generated_reference() -> None:
    readme = (REPO / "README.md").read_text()
    found = re.search(r"<!-- config-reference:start -->\n(.*?)<!-- config-reference:end -->", readme, re.S)
    assert found, "README.md lacks the config-reference markers"
    assert found.group(1).strip() == reference_table().strip(), (
        "README.md's configuration table is stale: run `python -m mxarchiverd.config.reference`")


def test_keys_a_file_does_not_set_are_never_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("archive:\n  database_url: postgresql:///a\nmatrix:\n  access_token_file: " + str(path) + "\n")
    config = load_config(str(path), {})
    assert "matrix.access_token" in config.given and keys_without_effect(config) == []
    assert "matrix.username" not in config.given


def test_a_derived_default_follows_the_key_it_derives_from(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("archive:\n  database_url: postgresql:///a\n")
    assert load_config(str(path), {}).archive.storage_backend == "file"
    path.write_text("archive:\n  database_url: postgresql:///a\nsupabase:\n  url: https://p.supabase.co\n"
                    "  service_role_key: k\n")
    assert load_config(str(path), {}).archive.storage_backend == "supabase"
