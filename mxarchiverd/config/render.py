"""The effective configuration as YAML, every secret masked (for check-config)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from mxarchiverd.config.model import Config
from mxarchiverd.config.secret import Secret
from mxarchiverd.config.units import MimePattern


def effective_config(config: Config) -> dict[str, Any]:
    data = _plain(config)
    data.pop("path", None)
    data.pop("given", None)
    return data


def render_yaml(config: Config) -> str:
    return yaml.safe_dump(effective_config(config), sort_keys=False, allow_unicode=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.masked()
    if isinstance(value, (Path, MimePattern)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
