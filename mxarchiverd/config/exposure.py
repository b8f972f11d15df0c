"""Warn at start when a file holding secrets can be read by other users.

A config file that writes a password, a key or a token inline, and is readable by
group or others, gives every such user the archive (or the homeserver). So do the
files named by `*_file` keys: they hold nothing but a secret, so the same rule
applies to them. One group is fine: the daemon's own primary group when nobody
else is in it (systemd-sysusers' `mxarchiver` group; README: install -m 640
-g mxarchiver), because reading by that group is reading by the daemon itself.
Systemd credentials (LoadCredential=) are readable by the service only, so they
never warn.

Not inline: a value taken from the environment (`${VAR}`), and a connection
string without a password (peer or certificate authentication).
"""
from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from mxarchiverd.config.model import Config
from mxarchiverd.config.secret import Secret
from mxarchiverd.config.settings import walk


def holds_secret(value: Any) -> bool:
    """A value written in the file that is itself secret (not ${VAR}, not a password-less URL)."""
    if not isinstance(value, str) or not value.strip() or "${" in value:
        return False
    return Secret(value).masked() != value


def secret_keys(data: Any) -> Iterator[tuple[str, Any, Any]]:
    """(key path, inline value, `<key>_file` value) of every secret setting present in the mapping."""
    for declared in walk(Config):
        if not declared.setting.secret:
            continue
        *sections, key = declared.path.split(".")
        node: Any = data
        for name in sections:
            node = node.get(name) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and (key in node or f"{key}_file" in node):
            yield declared.path, node.get(key), node.get(f"{key}_file")


def inline_secrets(data: Any) -> list[str]:
    return [path for path, inline, _ in secret_keys(data) if holds_secret(inline)]


def secret_files(data: Any) -> list[tuple[str, Path]]:
    return [(f"{path}_file", Path(file)) for path, _, file in secret_keys(data)
            if isinstance(file, str) and file and "${" not in file]


def readable_by(mode: int, file_gid: int, own_gid: int, group_members: list[str]) -> str | None:
    """'others' or 'group' when they may read a file of this mode, else None."""
    if mode & stat.S_IROTH:
        return "others"
    if mode & stat.S_IRGRP and not (file_gid == own_gid and not group_members):
        return "group"
    return None


def _members(gid: int) -> list[str]:
    try:
        return list(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return []


def _exposure(path: Path) -> tuple[str, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    who = readable_by(info.st_mode, info.st_gid, os.getegid(), _members(info.st_gid))
    return (who, stat.S_IMODE(info.st_mode)) if who else None


def exposure_warnings(config_path: Path | None) -> list[str]:
    """One warning per secret-holding file that group or others can read; never a secret's value."""
    if config_path is None:
        return []
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    warnings = []
    inline, found = inline_secrets(data), _exposure(config_path)
    if inline and found:
        warnings.append(f"{config_path} holds secrets ({', '.join(inline)}) and is readable by {found[0]} "
                        f"(mode {found[1]:04o}): chmod 600, or 640 with the daemon's own group, or move them "
                        "into *_file keys (systemd credentials)")
    for key, file in secret_files(data):
        exposed = _exposure(file)
        if exposed:
            warnings.append(f"{file} ({key}) is readable by {exposed[0]} (mode {exposed[1]:04o}): chmod 600, "
                            "or use systemd's LoadCredential=")
    return warnings
