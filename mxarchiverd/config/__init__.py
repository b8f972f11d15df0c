"""Configuration: YAML in /etc, ${VAR} interpolation, *_file secrets, seed 001 overrides."""
from __future__ import annotations

from mxarchiverd.config.loader import DEFAULT_PATH, ConfigError, load_config
from mxarchiverd.config.model import (
    ArchiveConfig, Config, DaemonConfig, ProcessingConfig, RoomConfig, SourceConfig,
)
from mxarchiverd.config.secret import Secret

__all__ = [
    "DEFAULT_PATH", "ArchiveConfig", "Config", "ConfigError", "DaemonConfig", "ProcessingConfig",
    "RoomConfig", "Secret", "SourceConfig", "load_config",
]
