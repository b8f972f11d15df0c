"""The settings reference, rendered from the declarations (model.py), and mode checks.

README.md's configuration table is this module's output (`python -m
mxarchiverd.config.reference` prints it; a test keeps the two equal), so the
documentation cannot drift from the code.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from mxarchiverd.config.model import Config
from mxarchiverd.config.secret import Secret
from mxarchiverd.config.settings import OWN_ARCHIVE_URL_UNSET, SOURCE_MODES, Declared, Effect, Setting, walk
from mxarchiverd.config.units import MimePattern

_EFFECT_WORDS = {
    Effect.HOT: "live",
    Effect.SUPERVISOR: "live",
    Effect.REFUSE: "restart the service",
    Effect.IGNORE: "",
}


def facts(config: Config) -> frozenset[str]:
    """The facts of this configuration that Setting.needs is written in."""
    found = {f"source.mode: {config.source.mode}", f"archive.storage_backend: {config.archive.storage_backend}"}
    if config.archive.database_url is None:
        found.add(OWN_ARCHIVE_URL_UNSET)
    return frozenset(found)


def keys_without_effect(config: Config) -> list[tuple[str, str]]:
    """(key path, why) for each key the file (or environment) sets that nothing reads here."""
    known = facts(config)
    found = []
    for declared in walk(Config):
        setting = declared.setting
        if declared.path not in config.given:
            continue
        in_mode = config.source.mode in setting.modes
        if in_mode and (not setting.needs or known.intersection(setting.needs)):
            continue
        found.append((declared.path, _why_idle(setting, in_mode)))
    return found


def _why_idle(setting: Setting, in_mode: bool) -> str:
    if not setting.modes:
        return setting.idle or "read by nothing in this release"
    wanted = [f"source.mode: {m}" for m in setting.modes] if not in_mode else list(setting.needs)
    return f"has an effect only with {' or '.join(wanted)}" + (f" ({setting.idle})" if setting.idle else "")


def reference_table() -> str:
    """Markdown: key, default, what a reload does, modes, meaning."""
    lines = ["| key | default | on reload | modes | meaning |", "|---|---|---|---|---|"]
    lines += [_row(d) for d in walk(Config)]
    return "\n".join(lines)


def _row(declared: Declared) -> str:
    setting = declared.setting
    cells = [f"`{declared.path}`", _default(declared), _on_reload(declared), _modes(setting.modes), setting.doc]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _default(declared: Declared) -> str:
    if declared.setting.shown_default is not None:
        return declared.setting.shown_default
    field = declared.field
    value = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return _shown(value)


def _shown(value: Any) -> str:
    if value is None or value == ():
        return "—"
    if isinstance(value, Secret):
        return value.masked()
    if isinstance(value, (Path, MimePattern)):
        return str(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def _on_reload(declared: Declared) -> str:
    setting = declared.setting
    if setting.effect is Effect.RESTART:
        return "restarts " + ", ".join(sorted(setting.restarts))
    return _EFFECT_WORDS[setting.effect]


def _modes(modes: tuple[str, ...]) -> str:
    if set(modes) == set(SOURCE_MODES):
        return "both"
    return ", ".join(modes) if modes else "none (accepted, no effect)"


if __name__ == "__main__":
    sys.stdout.write(reference_table() + "\n")
