"""Read the YAML file, expand ${VAR} references, apply seed 001's environment overrides.

Order: file -> interpolation -> environment overrides -> typed sections. An
override wins over the file, so an operator can keep one file and change a value
per host in the unit's Environment= lines.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mxarchiverd.config.model import Config
from mxarchiverd.config.reader import Problems
from mxarchiverd.config.sections import build_config

DEFAULT_PATH = Path("/etc/mxarchiver/config.yaml")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}|\$\$")

# Seed 001's environment variables and the key each one overrides.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "WHATSAPP_DB_URL": ("source", "bridge_db_url"),
    "SYNAPSE_DB_URL": ("source", "synapse_db_url"),
    "SUPABASE_URL": ("supabase", "url"),
    "SUPABASE_KEY": ("supabase", "service_role_key"),
    "BATCH_SIZE": ("processing", "batch_size"),
    "MEDIA_STORE_PATH": ("source", "media_store_path"),
    "DOWNLOAD_MEDIA": ("processing", "download_media"),
}


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every (key path, message)."""

    def __init__(self, problems: list[tuple[str, str]], source: str) -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"invalid configuration in {self.source} ({len(self.problems)} problem(s)):"]
        lines += [f"  {path}: {message}" for path, message in self.problems]
        return "\n".join(lines)


def resolve_path(cli_path: str | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether the operator named it explicitly."""
    if cli_path:
        return Path(cli_path), True
    if environ.get("MXARCHIVER_CONFIG"):
        return Path(environ["MXARCHIVER_CONFIG"]), True
    return DEFAULT_PATH, False


def load_config(cli_path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate; raise ConfigError naming every problem at once."""
    environ = os.environ if environ is None else environ
    path, explicit = resolve_path(cli_path, environ)
    problems = Problems()
    data = _read_yaml(path, explicit, problems)
    data = _interpolate(data, "", environ, problems)
    _apply_env_overrides(data, environ)
    config = build_config(data, problems, path if path.exists() else None)
    if problems:
        raise ConfigError(problems.items, str(path))
    return config


def given_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the operator gave, before defaults: the file with ${VAR}s expanded and the
    environment overrides applied (config/effect.py compares it with what is read)."""
    environ = os.environ if environ is None else environ
    ignored = Problems()  # load_config has reported them already
    data = _interpolate(_read_yaml(path, True, ignored) if path else {}, "", environ, ignored)
    _apply_env_overrides(data, environ)
    return data


def _read_yaml(path: Path, explicit: bool, problems: Problems) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        # Without a file the environment alone may configure the daemon (seed 001).
        if explicit:
            problems.add("(file)", f"{path} does not exist")
        return {}
    except OSError as exc:
        problems.add("(file)", f"cannot read {path}: {exc.strerror}")
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problems.add(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.add("(top level)", "expected a mapping of sections")
        return {}
    return data


def _interpolate(value: Any, path: str, environ: Mapping[str, str], problems: Problems) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", environ, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        return _VARIABLE.sub(lambda m: _expand(m, path, environ, problems), value)
    return value


def _expand(match: re.Match[str], path: str, environ: Mapping[str, str], problems: Problems) -> str:
    if match.group(0) == "$$":
        return "$"
    name, default = match.group(1), match.group(2)
    if name in environ:
        return environ[name]
    if default is not None:
        return default
    problems.add(path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
    return ""


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for variable, (section, key) in ENV_OVERRIDES.items():
        if environ.get(variable):
            _section(data, section)[key] = environ[variable]
    if environ.get("POLL_INTERVAL_MS"):
        _section(data, "processing")["poll_interval"] = f"{environ['POLL_INTERVAL_MS']}ms"
    if environ.get("MONITORED_ROOMS"):
        ids = [r.strip() for r in environ["MONITORED_ROOMS"].split(",") if r.strip()]
        data["rooms"] = [{"room_id": room_id} for room_id in ids]


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    if not isinstance(data.get(name), dict):
        data[name] = {}
    return data[name]
