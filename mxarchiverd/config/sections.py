"""Turn the parsed YAML mapping into a Config by walking the declared settings.

Nothing here names a key: each field's declaration (model.py, settings.py) says
how to read it. What is left are the checks that span several keys.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from mxarchiverd.config.dsn import dsn_value_problems
from mxarchiverd.config.model import Config
from mxarchiverd.config.reader import Problems, Section
from mxarchiverd.config.settings import Setting, declaration

# e2ee/store.py's rule; repeated here so that config never imports the Matrix client side.
MIN_PICKLE_KEY_CHARS = 16

# Derived defaults still to compute once the whole config is read: (key path, declaration).
Pending = list[tuple[str, Setting]]


def build_config(data: Any, problems: Problems, path: Path | None) -> Config:
    top = Section(data, "", problems)
    pending: Pending = []
    config = build_section(Config, top, pending)
    top.finish()
    for key_path, declared in pending:
        assert declared.derive is not None
        config = replace_at(config, key_path, declared.derive(config))
    config = dataclasses.replace(config, path=path, given=frozenset(problems.given))
    _cross_checks(config, problems)
    return config


def build_section(cls: type, s: Section, pending: Pending) -> Any:
    """One section's dataclass from its mapping; unknown keys are reported by s.finish()."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        declared = declaration(field)
        if declared is not None:
            values[field.name] = _read(field, declared, s, pending)
    return cls(**values)


def _read(field: dataclasses.Field[Any], declared: Setting, s: Section, pending: Pending) -> Any:
    name = field.name
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    if declared.section is not None:
        child = s.child(name)
        value = build_section(declared.section, child, pending)
        child.finish()
        return value
    if declared.read is not None:
        return declared.read(s, name)
    if declared.secret:
        secret = s.secret(name)
        return secret if secret is not None else default
    if declared.each is not None:
        items = tuple(_item(s, path, item, declared) for path, item in s.items(name))
        return tuple(item for item in items if item is not None) or default
    if declared.derive is not None and not s.given(name):
        pending.append((s.key_path(name), declared))
        return default
    assert declared.parse is not None, f"{s.key_path(name)} declares no parser"
    return s.get(name, declared.parse, default)


def _item(s: Section, path: str, item: Any, declared: Setting) -> Any:
    assert declared.each is not None
    try:
        return declared.each(item)
    except (ValueError, TypeError) as exc:
        s.problems.add(path, str(exc))
        return None


def replace_at(config: Any, key_path: str, value: Any) -> Any:
    """A copy of a (nested) dataclass with the value at a dotted key path replaced."""
    head, _, rest = key_path.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: replace_at(getattr(config, head), rest, value)})


# -- checks across keys ---------------------------------------------------------

def _dsn_problems(config: Config, problems: Problems) -> None:
    """libpq must be able to parse every connection string; its error text would quote the password."""
    dsns = {"source.synapse_db_url": config.source.synapse_db_url, "source.bridge_db_url": config.source.bridge_db_url,
            "archive.database_url": config.archive.database_url,
            "supabase.database.connection_string": config.supabase.database.connection_string}
    for path, secret in dsns.items():
        if secret is None:
            continue
        try:
            params = conninfo_to_dict(secret.value)
        except psycopg.Error:
            problems.add(path, "not a connection string libpq can parse (check the quoting; a '%' "
                               "in a URL password must be written %25)")
            continue
        for problem in dsn_value_problems(params):
            problems.add(path, f"connection string option {problem}")


def _cross_checks(config: Config, problems: Problems) -> None:
    _dsn_problems(config, problems)
    ha = config.daemon.ha
    if ha.renew_interval * 2 > ha.lease_duration:
        # One failed renewal must not cost the lease: there is time for a second try.
        problems.add("daemon.ha.renew_interval", "must be at most half of daemon.ha.lease_duration")
    if config.archive_dsn is None:
        problems.add("archive.database_url", "required: set it or supabase.database.connection_string")
    if config.source.mode == "matrix_sync":
        _bot_problems(config, problems)
    if config.archive.storage_backend == "supabase":
        if not config.supabase.url:
            problems.add("supabase.url", "required when archive.storage_backend is supabase")
        if config.supabase.service_role_key is None:
            problems.add("supabase.service_role_key", "required when archive.storage_backend is supabase")


def _bot_problems(config: Config, problems: Problems) -> None:
    matrix = config.matrix
    if matrix.access_token is None and not (matrix.username and matrix.password):
        problems.add("matrix", "matrix_sync needs username and password, or access_token")
    key = matrix.pickle_key.value if matrix.pickle_key else ""
    if len(key) < MIN_PICKLE_KEY_CHARS or key == "DEFAULT_KEY":
        problems.add("matrix.pickle_key", f"required in matrix_sync mode: a secret of at least "
                                          f"{MIN_PICKLE_KEY_CHARS} characters (it encrypts the crypto store)")
